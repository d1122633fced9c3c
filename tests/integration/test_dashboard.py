"""The dashboard in a real headless Chromium (Debian's, driven by Playwright), against a
real broker with real clients: it must show what the broker holds, update without a
reload, draw the rates, and its buttons must act. (Its login: test_dashboard_login.py.)"""
from __future__ import annotations

import shutil
import struct
import time
import zlib
from pathlib import Path

import pytest

import zbroker.client as pika
from tests.support import Broker, pump_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PUBLISH_ORANGE = (255, 102, 0)  # the chart's publish line (#f60)


def png_pixels(data: bytes) -> list[tuple[int, ...]]:
    """RGB(A) pixels of an 8-bit PNG, as Chromium writes them (enough for the check)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and colour in (2, 6)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    previous = bytearray(stride)
    pixels = []
    for row in range(height):
        kind, line = raw[row * (stride + 1)], bytearray(raw[row * (stride + 1) + 1:(row + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                best = min((abs(p - left), 0, left), (abs(p - up), 1, up), (abs(p - corner), 2, corner))[2]
                line[i] = (line[i] + best) & 255
        pixels += [tuple(line[i:i + channels]) for i in range(0, stride, channels)]
        previous = line
    return pixels


@pytest.fixture
def web() -> Broker:
    proc = Broker("--http", "127.0.0.1:0", "--stats-interval", "0.5")
    m = proc.wait_for(r"HTTP API and dashboard on (http://[\d.]+:\d+)/")
    proc.http = m.group(1)
    yield proc
    assert proc.stop() == 0
    proc.remove_data()


def log_in(page, user: str = "guest", password: str = "guest") -> None:  # noqa: ANN001
    """Log in through the dashboard's form (the page is open and shows it)."""
    page.wait_for_selector("#login-form", state="visible")
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#login-form button[type=submit]")


def page_errors(page) -> list[str]:  # noqa: ANN001
    """The page's uncaught exceptions and console errors, as they come."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    return errors


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(web: Broker, browser):  # noqa: ANN001
    page = browser.new_page(viewport={"width": 1366, "height": 768})  # a laptop screen
    errors = page_errors(page)
    page.goto(web.http + "/")
    log_in(page)
    page.wait_for_selector("text=Message rates")
    yield page
    assert errors == [], errors


def test_dashboard_shows_live_state_and_acts(web: Broker, page, tmp_path: Path) -> None:
    connection = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", web.port, client_properties={"connection_name": "invoice-worker"}))
    channel = connection.channel()
    channel.queue_declare("invoices", durable=True, arguments={"x-message-ttl": 600000})

    # Publish for a few seconds: the rate chart must draw a publish line, without a reload.
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        for _ in range(20):
            channel.basic_publish("", "invoices", b'{"invoice": 42}')
        connection.process_data_events(0.02)
    page.wait_for_function("() => parseFloat(document.querySelector('[data-rate=publish]').textContent) > 0",
                           timeout=10000)
    shown = page.inner_text("#status")  # "live · <time>": the next redraw draws the chart with the rate in it
    page.wait_for_function("(shown) => document.getElementById('status').textContent !== shown", arg=shown,
                           timeout=10000)
    chart = png_pixels(page.locator("#rates").screenshot())
    orange = sum(1 for p in chart if abs(p[0] - PUBLISH_ORANGE[0]) < 30 and abs(p[1] - PUBLISH_ORANGE[1]) < 40
                 and p[2] < 60)
    assert orange > 50, f"no publish line in the chart ({orange} orange pixels)"
    page.screenshot(path=str(tmp_path / "dashboard-overview.png"))
    assert "Connections" in page.inner_text("main")

    # The queue list shows the queue, its features and its depth, updated live.
    page.goto(web.http + "/#/queues")
    row = page.locator("tr", has_text="invoices")
    row.wait_for()
    assert "D" in row.inner_text() and "TTL" in row.inner_text()
    total = int(row.locator("td").nth(7).inner_text().replace(",", ""))  # (name, vhost, type, features, state, ready, unacked, total)
    assert total > 100
    channel.basic_publish("", "invoices", b"one more")
    connection.process_data_events(0.1)
    page.wait_for_function(
        f"() => [...document.querySelectorAll('tr')].some(r => r.textContent.includes('invoices') && "
        f"r.children[7] && r.children[7].textContent.replace(/,/g, '') == '{total + 1}')", timeout=10000)
    png = png_pixels(page.screenshot(path=str(tmp_path / "dashboard-queues.png")))
    assert len(set(png)) > 20, "the queue page rendered as a blank image"

    # The queue page: get a message, purge, delete.
    row.locator("a").click()
    page.wait_for_selector("text=Get messages")
    page.click("#get")
    page.wait_for_selector("pre.payload")
    assert page.inner_text("pre.payload") == '{"invoice": 42}'
    page.click("#purge")
    page.wait_for_function("() => document.querySelector('main table td.n') && "
                           "document.querySelector('main table td.n').textContent === '0'", timeout=10000)
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#delete")
    page.wait_for_function("() => location.hash === '#/queues'")
    page.wait_for_selector("text=No queues.")

    # Connections: the client is listed under its name and can be closed from here.
    page.goto(web.http + "/#/connections")
    page.wait_for_selector("text=invoice-worker")
    page.click("button[data-close]")
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        pump_until(connection, lambda: False)  # until the close arrives (or WAIT_S goes by)
    assert closed.value.reply_code == 320
    page.wait_for_selector("text=No connections.")


def test_an_action_waits_for_the_redraw_that_read_the_view_before_it(web: Broker, page) -> None:  # noqa: ANN001
    """A redraw that has read the queue page asks for the queue; a Delete clicked meanwhile
    must not reach the broker first, or that redraw's request finds no queue (a 404 the
    user sees as a console error). Hold the redraw's request, click Delete, then let it go:
    the DELETE must come after the redraw's answer, and the page must end on the queue list."""
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", web.port))
    connection.channel().queue_declare("short-lived")
    connection.close()
    queue_url = web.http + "/api/queues/%2F/short-lived"
    held, armed, answers, sent = [], [], [], []
    page.on("response", lambda r: answers.append(r.status) if r.url == queue_url and r.request.method == "GET" else None)
    page.on("request", lambda r: sent.append(r.method) if r.url == queue_url else None)

    def hold_one_get_once_armed(route, request) -> None:  # noqa: ANN001
        if armed and request.method == "GET" and not held:
            held.append(route)
        else:
            route.continue_()

    page.route(queue_url, hold_one_get_once_armed)
    page.goto(web.http + "/#/queues/%2F/short-lived")
    page.wait_for_selector("#delete")
    armed.append(True)
    with page.expect_request(lambda r: r.url == queue_url and r.method == "GET"):
        pass  # the next timed redraw (every 2 s) asks for the queue, and is held there
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#delete")
    held[0].continue_()
    page.wait_for_function("() => location.hash === '#/queues'")
    page.wait_for_selector("text=No queues.")
    assert "DELETE" in sent
    assert len(answers) >= 2 and set(answers) == {200}, answers  # the held GET found the queue: it went first
