"""The dashboard at ``/ui`` in a real browser (Chromium via Playwright) against a real
``moorage serve`` on the process runtime: what a user sees and does there.

Each step leaves a screenshot under the artifacts folder (``tests/support/browser.py``).
With ``MOORAGE_UPDATE_DOCS_IMAGES=1`` the list step also rewrites
``docs/images/dashboard.png``.
"""

from __future__ import annotations

import http.client
import os
import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests

from tests.support.browser import ROOT, artifacts, launched
from tests.support.server import FLASK_COMMAND, ApiClient, MoorageServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

# What the dashboard shows is the API's answers; the store behind them does not matter.
STORES = ["sqlite"]
WAIT_MS = 90_000
HOSTILE = '<img src=x onerror="window.__owned=1">'
DOCS_IMAGE = ROOT / "docs" / "images" / "dashboard.png"
MONEY = re.compile(r"^-?[0-9]+\.(?:[0-9]{2}|[0-9]{3,6}(?<!0)) USD$")
# What a user would see cut off or pushed off the screen in the current view: a
# control past the window's edge, a select whose chosen option is wider than its box
# (less its arrow), a button whose label overflows, a page that scrolls sideways.
CUT_OFF = """() => {
    const cut = [];
    const width = document.documentElement.clientWidth;
    const measure = document.createElement("canvas").getContext("2d");
    const controls = "#view input, #view select, #view textarea, #view button";
    for (const el of document.querySelectorAll(controls)) {
        if (!el.offsetParent) continue;
        const name = el.id || el.textContent;
        const box = el.getBoundingClientRect();
        if (box.left < -0.5 || box.right > width + 0.5) cut.push(`${name} sticks out`);
        if (el.tagName === "BUTTON" && el.scrollWidth > el.clientWidth) cut.push(`${name} is cut`);
        if (el.tagName === "SELECT" && el.selectedIndex >= 0) {
            const style = getComputedStyle(el);
            measure.font = style.font;
            const text = el.options[el.selectedIndex].text;
            const room = el.clientWidth - parseFloat(style.paddingLeft)
                - parseFloat(style.paddingRight) - 20;
            if (measure.measureText(text).width > room) cut.push(`${name} cuts "${text}"`);
        }
    }
    if (document.documentElement.scrollWidth > width) cut.push("the page scrolls sideways");
    return cut;
}"""


@dataclass
class Tab:
    """A browser tab of its own (fresh session storage) and what went wrong in it."""

    page: Page
    folder: Path
    base: str
    errors: list[str] = field(default_factory=list)
    shots: int = 0

    def shot(self, name: str) -> None:
        self.shots += 1
        self.folder.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(self.folder / f"{self.shots:02d}-{name}.png"), full_page=True)

    def sign_in(self, token: str) -> None:
        from playwright.sync_api import expect

        self.page.goto(self.base + "/ui")
        self.page.get_by_label("API token").fill(token)
        self.page.get_by_role("button", name="Sign in").click()
        expect(self.page.get_by_role("heading", name="Endpoints", level=2)).to_be_visible()
        assert token not in self.page.url

    def nothing_cut(self, *widths: int) -> None:
        """At each window width, no control is cut off or off the screen."""
        for width in widths:
            self.page.set_viewport_size({"width": width, "height": 800})
            assert self.page.evaluate(CUT_OFF) == [], width
        self.page.set_viewport_size({"width": 1280, "height": 800})

    def row(self, name: str) -> Locator:
        return self.page.locator("#endpoints tbody tr").filter(
            has=self.page.get_by_role("link", name=name, exact=True)
        )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched() as running:
        yield running


@pytest.fixture
def tab(browser: Browser, server: MoorageServer, request: pytest.FixtureRequest) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        opened = Tab(page, artifacts("dashboard", request.node.name), server.url)
        page.on("pageerror", lambda error: opened.errors.append(f"page error: {error}"))
        page.on(
            "console",
            lambda message: (
                opened.errors.append(f"console: {message.text}")
                if message.type == "error" and "Content Security Policy" in message.text
                else None
            ),
        )
        yield opened
    finally:
        context.close()


def _keep_calling(client: ApiClient, service_id: str, done: threading.Event) -> None:
    """Calls the endpoint through the gateway, a few times a second, until ``done``."""
    while not done.wait(0.1):
        client.gateway(service_id)


def _delete_all(client: ApiClient) -> None:
    listed = client.call("GET", "/v1/inference-service", params={"page_size": 100}).json()
    for endpoint in listed["service_list"]:
        client.call("DELETE", f"/v1/inference-service/{endpoint['service_id']}")


def test_the_ui_is_static_files_with_strict_headers(server: MoorageServer) -> None:
    page = requests.get(server.url + "/ui", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    policy = page.headers["Content-Security-Policy"]
    for directive in ("default-src 'self'", "script-src 'self'", "frame-ancestors 'none'"):
        assert directive in policy
    assert "unsafe-inline" not in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    script = requests.get(server.url + "/ui/app.js", timeout=10)
    assert script.headers["Content-Type"].startswith("text/javascript")
    assert script.headers["Content-Security-Policy"] == policy


@pytest.mark.parametrize(
    "target",
    [
        "/ui/../pyproject.toml",
        "/ui/../../pyproject.toml",
        "/ui/%2e%2e/dashboard.py",
        "/ui/..%2fdashboard.py",
        "/ui/%2e%2e%2f%2e%2e%2fapp.py",
        "/ui/..%5capp.py",
        "/ui/%252e%252e%252fapp.py",
        "/ui//etc/passwd",
        "/ui/app.js%00.html",
        "/ui/APP.JS",
        "/ui/__init__.py",
    ],
)
def test_nothing_but_the_packaged_files(server: MoorageServer, target: str) -> None:
    """Sent as written (no client-side normalisation): never a file from elsewhere."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", target)
        answer = connection.getresponse()
        body = answer.read()
    finally:
        connection.close()
    assert answer.status in (400, 404), (target, answer.status, body[:200])
    for leaked in (b"[project]", b"import ", b"root:"):
        assert leaked not in body


def test_without_a_token_only_the_sign_in_form_shows(tab: Tab, alice: ApiClient) -> None:
    from playwright.sync_api import expect

    page = tab.page
    page.goto(tab.base + "/ui")
    expect(page.get_by_label("API token")).to_be_visible()
    expect(page.locator("#view")).to_be_hidden()
    expect(page.locator("#nav")).to_be_hidden()
    tab.shot("sign-in")
    page.get_by_label("API token").fill("mrg_not_a_real_token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#sign-in-error")).to_contain_text("refused")
    expect(page.locator("#view")).to_be_hidden()
    tab.shot("refused")
    # By keyboard alone: the skip link, then the token, then Enter.
    page.goto(tab.base + "/ui")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(page.get_by_label("API token")).to_be_focused()
    page.keyboard.type(alice.token)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Endpoints", level=2)).to_be_visible()
    # Focus follows: on the page's heading, not lost on <body> with the gone form.
    expect(page.get_by_role("heading", name="Endpoints", level=2)).to_be_focused()
    # Signing out forgets the token.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API token")).to_be_visible()
    expect(page.locator("#view")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0
    assert not tab.errors, tab.errors


def test_create_scale_logs_events_and_delete(tab: Tab, alice: ApiClient) -> None:
    from playwright.sync_api import expect

    page = tab.page
    marker = f"dashboard-{secrets.token_hex(6)}"
    name = f"web-{secrets.token_hex(3)}"
    try:
        tab.sign_in(alice.token)
        expect(page.get_by_role("heading", name="Endpoints", level=2)).to_be_focused()
        page.get_by_label("Name", exact=True).fill(name)
        command = page.get_by_label("Command")
        expect(command).to_have_attribute("placeholder", re.compile(r"\$PORT"))
        expect(page.locator("#create-command-hint")).to_have_text(
            "Runs as sh -c. The app must listen on $PORT; on the process runtime bind 127.0.0.1."
        )
        expect(command).to_have_attribute("aria-describedby", "create-command-hint")
        command.fill(f"echo {marker} && {FLASK_COMMAND}")
        expect(page.get_by_label("Flavor")).to_contain_text(re.compile(r" · [0-9.]+ USD/h"))
        tab.nothing_cut(1280, 375)
        # A refusal shows the server's message next to the form.
        page.get_by_label("Replicas", exact=True).fill("100000")
        page.get_by_role("button", name="Create endpoint").click()
        expect(page.locator("#create-error")).to_contain_text(
            "resource_metadata.target_instance_number"
        )
        tab.shot("refused")
        page.get_by_label("Replicas", exact=True).fill("1")
        tab.shot("form")
        page.get_by_role("button", name="Create endpoint").click()
        row = tab.row(name)
        expect(row).to_contain_text("available", timeout=WAIT_MS)
        expect(row).to_contain_text("1/1")
        # Price and cost with one rule: 2 to 6 decimals, trailing zeros trimmed.
        expect(row.locator('td[data-label="Price per hour"]')).to_have_text(MONEY)
        expect(row.locator('td[data-label="Cost so far"]')).to_have_text(MONEY)
        tab.shot("available")
        # A phone's width: the table reflows, nothing is wider than the screen.
        page.set_viewport_size({"width": 375, "height": 812})
        expect(page.locator("#endpoints thead")).not_to_be_in_viewport()
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        tab.shot("phone")
        page.set_viewport_size({"width": 1280, "height": 800})
        if os.environ.get("MOORAGE_UPDATE_DOCS_IMAGES") == "1":
            page.get_by_label("Command").fill("")
            page.get_by_label("Command").blur()
            page.screenshot(path=str(DOCS_IMAGE))

        page.get_by_role("link", name=name, exact=True).click()
        expect(page.get_by_role("heading", name=name, level=2)).to_be_focused()
        assert re.search(r"#/endpoint/[0-9a-f]{32}$", page.url), page.url
        # Only the action that applies is enabled: Stop while it runs, never Start.
        expect(page.get_by_role("button", name="Stop")).to_be_enabled()
        expect(page.get_by_role("button", name="Start")).to_be_disabled()
        expect(page.get_by_role("button", name="Delete")).to_be_enabled()
        tab.nothing_cut(1280, 375)
        page.get_by_label("Replicas wanted").fill("2")
        page.get_by_role("button", name="Scale").click()
        # The PUT only asks: the status line says so, then follows the replicas.
        expect(page.locator("#status")).to_have_text(
            re.compile(r"^Scaling to 2: (asked; [01]/2|done; 2/2) ready$")
        )
        expect(page.locator("#summary-replicas")).to_have_text("2/2", timeout=WAIT_MS)
        expect(page.locator("#status")).to_have_text("Scaling to 2: done; 2/2 ready")
        expect(page.locator("#replicas tbody tr")).to_have_count(2)
        expect(page.locator("#logs")).to_contain_text(marker, timeout=WAIT_MS)
        expect(page.locator("#events")).to_contain_text("scaled from 1 to 2 replicas")
        # Requests through the gateway while the charts poll: a rate above zero, a latency.
        service_id = page.url.rsplit("/", 1)[1]
        done = threading.Event()
        sender = threading.Thread(target=_keep_calling, args=(alice, service_id, done))
        sender.start()
        try:
            expect(page.locator("#chart-rate figcaption")).to_have_text(
                re.compile(r"^Requests per second: (?!0\.00 )[0-9.]+ req/s$"), timeout=30_000
            )
            expect(page.locator("#chart-latency figcaption")).to_have_text(
                re.compile(r"^Mean latency: [0-9]+ ms$")
            )
            expect(page.locator("#chart-rate polyline")).to_have_count(1)
        finally:
            done.set()
            sender.join(timeout=30)
        tab.shot("scaled")

        page.get_by_role("button", name="Stop").click()
        expect(page.locator("#summary-status")).to_contain_text("stopped", timeout=WAIT_MS)
        # As `moorage ls` and target_instance_number: none ready of the 2 it keeps.
        expect(page.locator("#summary-replicas")).to_have_text("0/2 (stopped)", timeout=WAIT_MS)
        expect(page.locator("#status")).to_have_text("Stopping: done; stopped")
        expect(page.get_by_role("button", name="Stop")).to_be_disabled()
        expect(page.get_by_role("button", name="Start")).to_be_enabled()
        page.get_by_role("button", name="Start").click()
        expect(page.locator("#summary-status")).to_contain_text("available", timeout=WAIT_MS)
        expect(page.locator("#summary-replicas")).to_have_text("2/2")
        expect(page.locator("#status")).to_have_text("Starting: done; 2/2 ready")
        expect(page.locator("#events")).to_contain_text("stopped")

        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Delete").click()
        expect(page.get_by_role("heading", name="Endpoints", level=2)).to_be_focused()
        expect(page.get_by_role("link", name=name, exact=True)).to_have_count(0)
        tab.shot("deleted")
        assert alice.call("GET", "/v1/inference-service").json()["total"] == 0
        assert not tab.errors, tab.errors
    finally:
        _delete_all(alice)


def test_edit_sends_what_changed_and_follows_the_new_revision(tab: Tab, alice: ApiClient) -> None:
    """The Edit form shows the endpoint's deploy_metadata and flavor; Save sends only
    the changed fields in a PUT, shows a refusal's message, and follows the new revision
    until it serves."""
    from playwright.sync_api import expect

    page = tab.page
    created = alice.create(
        name=f"edit-{secrets.token_hex(3)}", deploy_metadata={"env": {"GREETING": "hello"}}
    )
    service_id = created["service_id"]
    revision = created["deploy_metadata"]["revision"]
    try:
        tab.sign_in(alice.token)
        page.goto(f"{tab.base}/ui#/endpoint/{service_id}")
        expect(page.locator("#summary-status")).to_contain_text("available", timeout=WAIT_MS)
        form = page.locator("#edit-form")
        expect(form.get_by_label("Image")).to_have_value("python:3.10-slim")
        expect(form.get_by_label("Command")).to_have_value(FLASK_COMMAND)
        expect(form.get_by_label("Port")).to_have_value("8080")
        expect(form.get_by_label("Environment")).to_have_value("GREETING=hello")
        expect(form.get_by_label("Flavor")).to_have_value(created["resource_metadata"]["flavor_id"])
        expect(form.get_by_label("Flavor")).to_contain_text("USD/h")
        expect(page.locator("#edit-command-hint")).to_contain_text("$PORT")
        tab.nothing_cut(1280, 375)
        form.get_by_role("button", name="Save changes").click()
        expect(page.locator("#edit-state")).to_have_text("Nothing changed.")
        # A refusal shows the server's message, naming the field.
        form.get_by_label("Port").fill("70000")
        form.get_by_role("button", name="Save changes").click()
        expect(page.locator("#edit-error")).to_contain_text("deploy_metadata.port")
        tab.shot("edit-refused")
        form.get_by_label("Port").fill("8080")
        form.get_by_label("Environment").fill("GREETING=hello\nMODE=edited")
        with page.expect_request(lambda r: r.method == "PUT") as sent:
            form.get_by_role("button", name="Save changes").click()
        assert sent.value.post_data_json == {
            "deploy_metadata": {"env": {"GREETING": "hello", "MODE": "edited"}}
        }
        expect(page.locator("#edit-error")).to_be_empty()
        expect(page.locator("#status")).to_have_text(f"Saved: revision {revision + 1}.")
        expect(page.locator("#summary-revision")).to_have_text(str(revision + 1))
        expect(page.locator("#edit-state")).to_have_text(
            f"Revision {revision + 1} is serving: 1/1 ready.", timeout=WAIT_MS
        )
        tab.shot("edited")
        now = alice.get(service_id)
        assert now["deploy_metadata"]["env"] == {"GREETING": "hello", "MODE": "edited"}
        assert now["deploy_metadata"]["revision"] == revision + 1
        assert now["deploy_metadata"]["image_url"] == "python:3.10-slim"
        # Changed elsewhere while the form is not being edited: it shows what runs now.
        page.locator("#endpoint-title").focus()
        changed = alice.call(
            "PUT",
            f"/v1/inference-service/{service_id}",
            json={"deploy_metadata": {"env": {"GREETING": "elsewhere"}}},
        )
        assert changed.status_code == 200, changed.text
        expect(form.get_by_label("Environment")).to_have_value("GREETING=elsewhere")
        assert not tab.errors, tab.errors
    finally:
        _delete_all(alice)


def test_the_logs_stream_stops_when_leaving_the_page(tab: Tab, alice: ApiClient) -> None:
    """Leaving an endpoint's page ends its follow (the server's follower count drops:
    a new follow is not refused by the log_followers quota however often one leaves)."""
    from playwright.sync_api import expect

    page = tab.page
    created = alice.create(name=f"follow-{secrets.token_hex(3)}")
    try:
        tab.sign_in(alice.token)
        for _ in range(6):
            page.goto(f"{tab.base}/ui#/endpoint/{created['service_id']}")
            expect(page.locator("#logs-state")).to_have_text("Following the logs…")
            page.get_by_role("button", name="Endpoints", exact=True).click()
            expect(page.locator("#endpoints")).to_be_visible()
        page.goto(f"{tab.base}/ui#/endpoint/{created['service_id']}")
        expect(page.locator("#logs-state")).to_have_text("Following the logs…")
        expect(page.locator("#logs-state")).not_to_contain_text("stopped", timeout=3000)
    finally:
        _delete_all(alice)


def test_hostile_text_shows_as_text(tab: Tab, alice: ApiClient) -> None:
    from playwright.sync_api import expect

    page = tab.page
    printed = '<b id="injected">bold</b>'
    created = alice.create(
        name=HOSTILE,
        deploy_metadata={"command": f"echo '{printed}' && {FLASK_COMMAND}"},
    )
    try:
        tab.sign_in(alice.token)
        link = page.get_by_role("link", name=HOSTILE, exact=True)
        expect(link).to_have_text(HOSTILE)
        page.get_by_role("link", name=HOSTILE, exact=True).click()
        expect(page.get_by_role("heading", name=HOSTILE, level=2)).to_be_visible()
        expect(page.locator("#logs")).to_contain_text(printed, timeout=WAIT_MS)
        tab.shot("hostile")
        assert page.locator("img").count() == 0
        assert page.locator("#injected").count() == 0
        assert page.evaluate("window.__owned") is None
        assert created["name"] == HOSTILE
        assert not tab.errors, tab.errors
    finally:
        _delete_all(alice)


def test_traffic_rates_skip_a_counter_reset(tab: Tab, alice: ApiClient) -> None:
    """The chart's arithmetic, run in the browser from the served module: requests/s is
    Δrequests/Δt, latency Δlatency/Δresponses, and a counter that went down (a gateway
    restarted) skips that interval."""
    tab.sign_in(alice.token)
    points = tab.page.evaluate(
        """async () => {
            const { Series } = await import("/ui/traffic.js");
            const s = new Series();
            const at = (t, requests, responses, latency) => s.add({
                t, requests_total: requests, responses_total: responses,
                latency_seconds_total: latency });
            at(0, 0, 0, 0); at(2, 10, 10, 1); at(4, 2, 2, 0.1); at(6, 6, 6, 0.5); at(8, 6, 6, 0.5);
            return s.points;
        }"""
    )
    assert points == [
        {"t": 2, "rate": 5, "latency": 0.1},
        {"t": 6, "rate": 2, "latency": 0.1},
        {"t": 8, "rate": 0, "latency": None},
    ]


def test_money_and_the_edit_body_rules(tab: Tab, alice: ApiClient) -> None:
    """Run in the browser from the served modules: one money rule for prices and costs
    (up to 6 decimals, trailing zeros trimmed, at least 2), and an edit's PUT body holds
    only what changed (an emptied command is null, the environment whole)."""
    tab.sign_in(alice.token)
    shown = tab.page.evaluate(
        """async () => {
            const { money } = await import("/ui/dom.js");
            const { changes } = await import("/ui/edit.js");
            const before = { image: "img:1", command: "run $PORT", port: "8080",
                             env: "A=1", flavor: "cpu" };
            return {
                money: [0.01, 0.000403, 0, 12.5, "0.1234567", 3].map((v) => money(v, "usd")),
                same: changes(before, { ...before, command: "run $PORT  " }),
                command: changes(before, { ...before, command: " " }),
                env: changes(before, { ...before, env: "A=1\\nB=x=y" }),
                flavor: changes(before, { ...before, flavor: "gpu", port: "9000" }),
            };
        }"""
    )
    assert shown["money"] == [
        "0.01 USD",
        "0.000403 USD",
        "0.00 USD",
        "12.50 USD",
        "0.123457 USD",
        "3.00 USD",
    ]
    assert shown["same"] is None
    assert shown["command"] == {"deploy_metadata": {"command": None}}
    assert shown["env"] == {"deploy_metadata": {"env": {"A": "1", "B": "x=y"}}}
    assert shown["flavor"] == {
        "deploy_metadata": {"port": 9000},
        "resource_metadata": {"flavor_id": "gpu"},
    }
