"""The dashboard's policies in a real headless Chromium, against a real broker: a policy
set over the HTTP API shows as a badge in the queue's row and on the queue's page, the
Policies view lists it, and the view's form and Delete button act."""
from __future__ import annotations

import base64
import json
from pathlib import Path

from playwright.sync_api import expect

import zbroker.client as pika
from tests.integration.test_dashboard import browser, page, web  # noqa: F401 (fixtures)
from tests.support import Broker

GUEST = {"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()}
WAIT_MS = 10000


def test_policies_show_in_queues_and_in_the_policies_view(web: Broker, page, tmp_path: Path  # noqa: ANN001, F811
                                                          ) -> None:
    dialogs: list[str] = []  # alerts (errors) and confirms, each accepted
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    put = page.request.put(web.http + "/api/policies/%2F/cap", headers=GUEST, data=json.dumps(
        {"pattern": "^q", "definition": {"max-length": 5}, "apply-to": "queues"}))
    assert put.status == 201, put.text()
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", web.port))
    channel = connection.channel()
    channel.queue_declare("q-orders")
    channel.queue_declare("audit")

    # The queue list: the policy's name is a badge among the features, only where it applies.
    page.goto(web.http + "/#/queues")
    orders = page.locator("tr", has_text="q-orders")
    expect(orders.locator(".feature.policy")).to_have_text("cap", timeout=WAIT_MS)
    expect(page.locator("tr", has_text="audit")).to_be_visible()
    expect(page.locator("tr", has_text="audit").locator(".feature.policy")).to_have_count(0)

    # The queue's page: its policy, no operator policy, the effective definition.
    orders.locator("a", has_text="q-orders").click()
    details = page.locator("#queue-policy")
    expect(details.locator("tr", has_text="Operator policy")).to_be_visible(timeout=WAIT_MS)
    expect(details.locator("tr").nth(0)).to_have_text("Policycap")
    expect(details.locator("tr", has_text="Effective")).to_contain_text("max-length: 5")

    # The Policies view lists it with RabbitMQ's columns; no operator policy yet.
    page.screenshot(path=str(tmp_path / "dashboard-queue-policy.png"))
    page.click("nav a[data-tab=policies]")
    row = page.locator("tr", has_text="cap")
    expect(row.locator("td")).to_have_text(["/", "cap", "^q", "queues", "max-length: 5", "0", "Delete"],
                                           timeout=WAIT_MS)
    expect(page.locator("text=No operator policies.")).to_be_visible()

    # The form adds an operator policy; it reaches the queues that match.
    page.select_option("#policy-kind", "operator-policies")
    page.fill("#policy-name", "ops-cap")
    page.fill("#policy-pattern", ".*")
    page.select_option("#policy-apply-to", "queues")
    page.fill("#policy-definition", '{"max-length": 3}')
    page.click("#policy-form button[type=submit]")
    expect(page.locator("tr", has_text="ops-cap").locator("td").nth(4)).to_have_text("max-length: 3",
                                                                                       timeout=WAIT_MS)
    expect(page.locator("#policy-name")).to_have_value("")
    page.screenshot(path=str(tmp_path / "dashboard-policies.png"), full_page=True)
    # Delete the user policy: it leaves the list, and the queue keeps only the operator's.
    page.click("button[data-policy-kind=policies][data-policy-name=cap]")
    expect(page.locator("text=No policies.")).to_be_visible(timeout=WAIT_MS)
    page.click("nav a[data-tab=queues]")
    badges = page.locator("tr", has_text="q-orders").locator(".feature.policy")
    expect(badges).to_have_text(["ops-cap"], timeout=WAIT_MS)
    expect(badges).to_have_class("feature policy operator")
    page.screenshot(path=str(tmp_path / "dashboard-queues-policy.png"))
    assert dialogs == ["Delete policy cap?"]
    connection.close()
