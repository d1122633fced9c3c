"""The dashboard's login form in a real headless Chromium, against a real broker: the
API's users and tags, its refusal texts in the form, nothing of the login left after
log out, no login box of the browser's own, and a page opened at a URL with credentials."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import zbroker.client as pika
from tests.integration.test_dashboard import browser, log_in, page_errors, png_pixels  # noqa: F401 (a fixture)
from tests.support import Broker, child_env

CHALLENGE = 'Basic realm="RabbitMQ Management"'
#: What the page holds of a login, wherever a page could keep one.
STORED = "() => [sessionStorage.length, localStorage.length, document.cookie]"
#: A request with whatever the browser itself would add (a cached basic auth, cookies);
#: the header only keeps a refusal from waiting on a login box that headless never answers.
PLAIN_FETCH = ("() => fetch(location.origin + '/api/queues', {headers: {'X-Requested-With': 'XMLHttpRequest'}})"
               ".then(r => r.status)")


def ctl(broker: Broker, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "zbroker", "ctl", "--broker", broker.endpoint, *args],
                   check=True, capture_output=True, text=True, env=child_env(), timeout=30)


def challenges(page) -> list[str]:  # noqa: ANN001
    """The URLs of the 401s the page got with a WWW-Authenticate (a browser's login box)."""
    seen: list[str] = []
    page.on("response", lambda r: seen.append(r.url) if r.status == 401 and "www-authenticate" in r.headers
            else None)
    return seen


@pytest.fixture
def web() -> Broker:
    proc = Broker("--http", "127.0.0.1:0", "--stats-interval", "0.5")
    proc.http = proc.wait_for(r"HTTP API and dashboard on (http://[\d.]+:\d+)/").group(1)
    yield proc
    assert proc.stop() == 0
    proc.remove_data()


def test_api_keeps_basic_auth_and_the_page_needs_no_login(web: Broker, browser) -> None:  # noqa: ANN001
    request = browser.new_page().request
    refused = request.get(web.http + "/api/overview")
    assert refused.status == 401 and refused.headers["www-authenticate"] == CHALLENGE  # curl, rabbitmqadmin
    scripted = request.get(web.http + "/api/overview", headers={"X-Requested-With": "XMLHttpRequest"})
    assert scripted.status == 401 and "www-authenticate" not in scripted.headers
    assert scripted.json() == {"error": "not_authorised", "reason": "Not_Authorized"}
    page = request.get(web.http + "/")
    assert page.status == 200 and 'id="login-form"' in page.text()
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_log_in_see_queues_log_out(web: Broker, browser, tmp_path: Path) -> None:  # noqa: ANN001
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", web.port))
    connection.channel().queue_declare("invoices", durable=True)
    context = browser.new_context(viewport={"width": 1366, "height": 768})  # one browser window
    page = context.new_page()
    errors, asked = page_errors(page), challenges(page)
    page.goto(web.http + "/#/queues")
    page.wait_for_selector("#login-form", state="visible")
    assert not page.is_visible("nav") and page.inner_text("main") == ""
    login_png = png_pixels(page.screenshot(path=str(tmp_path / "dashboard-login.png")))
    assert len(set(login_png)) > 10, "the login form rendered as a blank image"

    log_in(page)
    page.locator("tr", has_text="invoices").wait_for()
    assert page.inner_text("#user-name") == "guest" and page.is_visible("#logout")
    assert not page.is_visible("#login-form")
    page.screenshot(path=str(tmp_path / "dashboard-logged-in.png"))
    held, kept, cookie = page.evaluate(STORED)
    assert (held, kept, cookie) == (2, 0, "")  # the Authorization value and the user, in this tab only
    assert context.cookies() == []
    page.reload()  # the tab's session outlives a reload ...
    page.locator("tr", has_text="invoices").wait_for()
    other = context.new_page()  # ... but is not another tab's
    other.goto(web.http + "/")
    other.wait_for_selector("#login-form", state="visible")
    other.close()

    page.click("#logout")
    page.wait_for_selector("#login-form", state="visible")
    assert "invoices" not in page.inner_text("body") and not page.is_visible("nav")
    assert page.evaluate(STORED) == [0, 0, ""]
    # No login is left anywhere in the browser: the API refuses the page's own requests.
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    assert page.evaluate(PLAIN_FETCH) == 401
    assert page.evaluate("() => session.request('/queues').then(() => 'answered', e => e.constructor.name)") \
        == "LoggedOut"
    time.sleep(2.5)  # a refresh period: the logged-out page asks nothing more
    assert [u for u in requests if "/api/" in u] == [web.http + "/api/queues"]
    assert asked == []
    assert [e for e in errors if "401" not in e] == [], errors
    connection.close()


def test_refusals_are_shown_in_the_form(web: Broker, browser) -> None:  # noqa: ANN001
    ctl(web, "add_user", "plain", "pw-plain")  # no tags: not a management user
    ctl(web, "add_user", "watcher", "pw-wätch:1")  # UTF-8 and a colon, as basic auth carries them
    ctl(web, "set_user_tags", "watcher", "management")
    page = browser.new_page()
    errors, asked = page_errors(page), challenges(page)
    page.goto(web.http + "/")

    log_in(page, "guest", "wrong")
    page.wait_for_selector("#login-status:has-text('Login failed')")
    log_in(page, "plain", "pw-plain")
    page.wait_for_selector("#login-status:has-text('Not management user')")
    assert page.is_visible("#login-form") and page.evaluate(STORED) == [0, 0, ""]

    # A management user is logged in; an action it may not take is that action's error,
    # not the end of its session.
    log_in(page, "watcher", "pw-wätch:1")
    page.wait_for_selector("text=Message rates")
    refused = page.evaluate("() => session.request('/users').then(() => 'answered', "
                            "e => [e.constructor.name, e.message, session.active()])")
    assert refused == ["Error", "Not administrator user", True]
    # Its password changes: the next refresh is refused and the form is back, with the reason.
    ctl(web, "change_password", "watcher", "pw-new")
    page.wait_for_selector("#login-status:has-text('Login failed')", timeout=10000)
    assert page.is_visible("#login-form") and page.inner_text("main") == ""
    assert page.evaluate(STORED) == [0, 0, ""]
    assert asked == []
    assert all("401" in e for e in errors), errors  # only the refusals, as the console reports them


def test_a_url_with_credentials_logs_in(web: Broker, browser) -> None:  # noqa: ANN001
    host = web.http.split("//")[1]
    page = browser.new_page()
    errors, asked = page_errors(page), challenges(page)
    page.goto(f"http://guest:guest@{host}/#/queues")
    page.wait_for_selector("text=Queues (")
    assert page.evaluate("() => document.URL") == web.http + "/#/queues"  # out of the address bar
    assert page.inner_text("#user-name") == "guest"
    page.click("#logout")  # and the URL's credentials are not left in the browser either
    assert page.evaluate(PLAIN_FETCH) == 401
    assert errors == [] or all("401" in e for e in errors), errors
    assert asked == []

    # Wrong ones show the form with the reason; the form then works at that URL too.
    page = browser.new_page()
    errors = page_errors(page)
    page.goto(f"http://guest:nope@{host}/")
    page.wait_for_selector("#login-status:has-text('Login failed')")
    assert page.input_value("#username") == "guest"
    assert "guest:nope@" in page.evaluate("() => document.URL")
    log_in(page)
    page.wait_for_selector("text=Message rates")
    page.wait_for_function("() => document.getElementById('status').textContent.startsWith('live')")
    assert not any("cannot be constructed" in e for e in errors), errors
    assert [e for e in errors if "401" not in e] == [], errors
