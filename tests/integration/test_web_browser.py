"""The viewer in headless Chromium against a running production.

gateway (HL7TCPService) -> router -> HL7TCPOperation -> a recording MLLP peer; the viewer runs as
``hie web FILE`` in its own OS process. Chromium is Debian's (``/usr/bin/chromium``), driven by
Playwright; without it these tests skip on a laptop and fail in CI (HIE_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from hie.adapters.mllp import BlockingMLLPClient
from hie.broker import answers
from hie.hl7 import ack_code
from hie.store import Status
from tests.conftest import skip_or_fail
from tests.integration.harness import Harness, free_port, wait_for
from tests.peers import MLLPPeer

pytestmark = pytest.mark.integration

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        skip_or_fail("no chromium binary (Debian: apt-get install chromium) for browser tests")
    return str(path)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def adt(control_id: str, mrn: str) -> str:
    return (
        "\r".join(
            [
                f"MSH|^~\\&|SEND|FAC|RECV|FAC|20260101120000||ADT^A01^ADT_A01|{control_id}|P|2.5.1",
                "EVN|A01|20260101120000",
                f"PID|1||{mrn}^^^HOSP^MR||DOE^JANE||19800101|F",
            ]
        )
        + "\r"
    )


@pytest.fixture
def running(harness: Harness) -> Iterator[tuple[Harness, MLLPPeer, int, str]]:
    """The production, its peer and the viewer; yields (harness, peer, gateway port, viewer URL)."""
    with MLLPPeer() as peer:
        port = free_port()
        harness.write(
            [
                {
                    "name": "ADT.In",
                    "class": "HL7TCPService",
                    "targets": ["ADT.Router"],
                    "settings": {"port": port},
                },
                {
                    "name": "ADT.Router",
                    "class": "HL7RoutingEngine",
                    "pool": "threads",
                    "pool_size": 2,
                    "targets": ["ADT.Out"],
                },
                {
                    "name": "ADT.Out",
                    "class": "HL7TCPOperation",
                    "pool": "threads",
                    "pool_size": 2,
                    "settings": {"host": "127.0.0.1", "port": peer.port},
                },
            ]
        )
        harness.start_worker("ADT.Router")
        harness.start_worker("ADT.Out")
        harness.start_gateway(port)
        web_port = free_port()
        log = (harness.tmp / "web.log").open("ab")
        assert harness.path is not None
        viewer = subprocess.Popen(
            [sys.executable, "-m", "hie.cli", "web", str(harness.path), "--port", str(web_port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=harness.env(),
            cwd=harness.tmp,
        )
        log.close()
        try:

            def listening() -> bool:
                if viewer.poll() is not None:
                    raise AssertionError(f"viewer exited: {harness.log('web')}")
                return answers(f"redis://127.0.0.1:{web_port}", timeout=0.2)

            wait_for(listening, 60, "the viewer to listen")
            yield harness, peer, port, f"http://127.0.0.1:{web_port}"
        finally:
            viewer.terminate()
            viewer.wait(20)


def test_search_message_trace_and_resend_in_the_browser(
    browser: Any, running: tuple[Harness, MLLPPeer, int, str]
) -> None:
    # ``browser`` comes first: without chromium the test skips before starting a production.
    h, peer, port, url = running
    mrn = f"MRN{uuid.uuid4().hex[:8]}"
    # Given a message that went gateway -> router -> operation -> peer
    with BlockingMLLPClient("127.0.0.1", port) as client:
        assert ack_code(client.send(adt("WEB00001", mrn).encode())) == "AA"
    wait_for(lambda: len(peer.received) == 1, 60, "the peer to get the message")
    wait_for(lambda: h.store.find(target="ADT.Out", status=Status.COMPLETED), 30, "completed")
    page = browser.new_page()
    try:
        # When we search by PID-3
        page.goto(f"{url}/messages")
        page.fill("input[name=field]", f"PID-3={mrn}")
        page.click("form.search button[type=submit]")
        rows = page.locator("table.results tbody tr")
        assert rows.count() == 2  # gateway -> router, and router -> operation
        # Then the router's message to the operation opens with its segments laid out
        rows.filter(has_text="ADT.Out").locator("a").first.click()
        assert page.locator("section.segment h3").all_inner_texts() == ["MSH", "EVN", "PID"]
        assert "Patient Identifier List" in page.inner_text("section#seg-3")
        assert mrn in page.inner_text("section#seg-3")
        # And the trace shows every hop as an SVG link
        page.click("text=Trace of the session")
        hops = page.locator("svg.trace a.hop")
        out = h.store.find(target="ADT.Out", field=("PID-3", mrn))[0]
        session = h.store.session(out.session_id)  # both hops, and the operation's ACK reply
        assert hops.count() == len(session) >= 3
        ids = {hops.nth(i).get_attribute("data-message-id") for i in range(hops.count())}
        assert ids == {m.message_id for m in session}
        # When the operation's hop is clicked and the message resent, with confirmation
        page.locator(f"svg.trace a.hop[data-message-id='{out.message_id}']").click()
        page.click("text=Resend…")
        assert page.locator("select[name=target]").input_value() == "ADT.Out"
        page.click("form.confirm button[type=submit]")
        # Then the peer gets it again, as a new message in the same session
        wait_for(lambda: len(peer.received) == 2, 60, "the peer to get the resent message")
        assert peer.received[1] == peer.received[0]
        resent = [m for m in h.store.session(out.session_id) if m.parent_id == out.message_id]
        assert [m.target for m in resent if m.target == "ADT.Out"] == ["ADT.Out"]
        assert "Done: resend" in page.inner_text("main")
    finally:
        page.close()
