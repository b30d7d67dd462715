"""The viewer's pages through Starlette's TestClient: search, pages, escaping, login, CSRF."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from hie.config.loader import load_production
from hie.messages import Envelope
from hie.settings import Settings
from hie.supervisor.control import ControlServer
from hie.supervisor.rundir import RunDir
from hie.store import MessageStore, Status
from hie.web import create_web_app
from hie.web.auth import hash_password, verify_password
from hie.web.search import MAX_OFFSET, parse_query
from hie.web.trace_svg import hops, render_svg


def adt(n: int, *, name: str = "DOE^JANE", mrn: str | None = None) -> str:
    return (
        "\r".join(
            [
                f"MSH|^~\\&|SEND|FAC|RECV|FAC|20260101120000||ADT^A01^ADT_A01|CTRL{n:05d}|P|2.5.1",
                "EVN|A01|20260101120000",
                f"PID|1||{mrn or 5000 + n}^^^HOSP^MR||{name}||19800101|F",
                "OBX|1|ED|PDF||" + "QUJD" * 100 + "||||||F",
            ]
        )
        + "\r"
    )


class Recorder:
    """Stands in for the dispatcher: stores what it is given as queued, as the outbox does."""

    def __init__(self, store: MessageStore) -> None:
        self.store = store
        self.sent: list[Envelope] = []

    def send(self, envelope: Envelope) -> None:
        self.store.save(envelope, status="queued", item=envelope.target, event="queued")
        self.sent.append(envelope)


@pytest.fixture
def production(tmp_path: Path) -> Any:
    path = tmp_path / "p.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "Web",
                "items": [
                    {
                        "name": "ADT.In",
                        "class": "HL7TCPService",
                        "targets": ["ADT.Out"],
                        "settings": {"port": 1},
                    },
                    {
                        "name": "ADT.Out",
                        "class": "HL7TCPOperation",
                        "settings": {"host": "127.0.0.1", "port": 2},
                    },
                ],
            }
        )
    )
    return load_production(path)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        broker_url="redis://127.0.0.1:1/0",
        database_url=f"sqlite:///{tmp_path}/x.db",
        home=tmp_path,
        _env_file=None,
    )  # type: ignore[call-arg]


def save(
    store: MessageStore,
    body: str,
    *,
    created: datetime | None = None,
    status: str = "completed",
    **fields: Any,
) -> Envelope:
    env = Envelope.wrap(body, source="ADT.In", target="ADT.Out", **fields)
    if created is not None:
        env = env.model_copy(update={"created_at": created})
    store.save(env, status=status, item="ADT.In")
    return env


@pytest.fixture
def client(settings: Settings, production: Any, store: MessageStore) -> TestClient:
    app = create_web_app(settings, production, store=store, sender=Recorder(store))
    return TestClient(app, base_url="http://127.0.0.1")


def csrf(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "no CSRF field on the page"
    return match.group(1)


def test_search_params_are_parsed_and_bad_ones_reported() -> None:
    q = parse_query(
        {
            "status": "error",
            "since": "2026-01-01T08:00",
            "field": "PID-3=123",
            "page": "2",
            "size": "25",
        }
    )
    assert q.problems == [] and q.status is Status.ERROR and q.field_path == ("PID-3", "123")
    assert q.since == datetime(2026, 1, 1, 8, tzinfo=UTC) and q.offset == 25
    bad = parse_query({"status": "lost", "since": "yesterday", "field": "PID-3", "page": "0"})
    assert len(bad.problems) == 4


def test_a_page_past_the_deepest_offset_is_refused_without_searching(
    client: TestClient, store: MessageStore
) -> None:
    save(store, adt(1))
    deepest = parse_query({"page": str(MAX_OFFSET // 50 + 1), "size": "50"})
    assert deepest.problems == []
    answer = client.get("/messages", params={"field": "PID-3=123", "page": "40000001"})
    assert answer.status_code == 400
    assert "page: at most 201 with 50 per page; narrow the search" in answer.text


def test_search_filters_by_type_status_and_time(client: TestClient, store: MessageStore) -> None:
    now = datetime.now(UTC)
    save(store, adt(1), created=now - timedelta(days=2))
    save(store, adt(2), created=now, status="error")
    save(store, adt(3).replace("ADT^A01^ADT_A01", "ORU^R01"), created=now)
    page = client.get("/messages", params={"type": "ADT^A01"}).text
    assert "CTRL00001" in page and "CTRL00002" in page and "CTRL00003" not in page
    page = client.get("/messages", params={"status": "error"}).text
    assert "CTRL00002" in page and "CTRL00001" not in page
    since = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    page = client.get("/messages", params={"since": since}).text
    assert "CTRL00001" not in page and "CTRL00003" in page
    assert client.get("/messages", params={"status": "lost"}).status_code == 400


def test_search_pages_newest_first(client: TestClient, store: MessageStore) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    for n in range(60):
        save(store, adt(n), created=start + timedelta(seconds=n))
    first = client.get("/messages", params={"size": "25"}).text
    assert "CTRL00059" in first and "CTRL00035" in first and "CTRL00034" not in first
    assert 'rel="next"' in first and 'rel="prev"' not in first
    third = client.get("/messages", params={"size": "25", "page": "3"}).text
    assert "CTRL00009" in third and "CTRL00000" in third and 'rel="next"' not in third


def test_field_search_finds_pid3_and_pid5_component(
    client: TestClient, store: MessageStore
) -> None:
    save(store, adt(1, mrn="777001"))
    save(store, adt(2, mrn="777002", name="SMITH^ANN"))
    page = client.get("/messages", params={"field": "PID-3=777001"}).text
    assert "CTRL00001" in page and "CTRL00002" not in page
    page = client.get("/messages", params={"field": "PID-5.1=SMITH"}).text
    assert "CTRL00002" in page and "CTRL00001" not in page


def test_message_page_names_fields_decodes_escapes_and_folds_obx5(
    client: TestClient, store: MessageStore
) -> None:
    env = save(store, adt(1, name="O\\T\\BRIEN^<script>alert(1)</script>"))
    store.set_ack(env.message_id, "AA", "accepted", item="ADT.In")
    page = client.get(f"/messages/{env.message_id}").text
    assert "Patient Identifier List" in page and "PID-3" in page
    assert "O&amp;BRIEN" in page  # \T\ decoded, then HTML-escaped
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<details><summary>QUJD" in page  # the 400-character OBX-5 is folded
    assert "AA" in page and "accepted" in page


def test_trace_svg_links_every_hop_and_escapes_names(
    client: TestClient, store: MessageStore
) -> None:
    root = save(store, adt(1))
    child = root.child(adt(1), target="<script>x</script>", source="ADT.Out")
    store.save(child, status="error", item="ADT.Out")
    page = client.get(f"/messages/{root.message_id}/trace").text
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert svg.count("<a href=") == 2
    assert f'href="/messages/{child.message_id}"' in svg
    assert "<script>" not in svg and "&lt;script&gt;x&lt;/script&gt;" in svg


def test_svg_renderer_escapes_error_text(store: MessageStore) -> None:
    env = save(store, adt(1), status="error")
    store.set_status(env.message_id, "error", error='bad "quote" & <tag>')
    hop_list = hops(store.session(env.session_id), store.events(session_id=env.session_id))
    svg = render_svg(hop_list, lambda name: "operation", lambda mid: f"/m/{mid}")
    assert "<tag>" not in svg and "&lt;tag&gt;" in svg and "&quot;quote&quot;" in svg


def test_resend_needs_confirmation_and_csrf_then_makes_a_child(
    client: TestClient, store: MessageStore
) -> None:
    env = save(store, adt(1))
    confirm = client.get(f"/messages/{env.message_id}/resend")
    assert confirm.status_code == 200 and len(store.session(env.session_id)) == 1
    refused = client.post(f"/messages/{env.message_id}/resend", data={"target": "ADT.Out"})
    assert refused.status_code == 403 and len(store.session(env.session_id)) == 1
    done = client.post(
        f"/messages/{env.message_id}/resend", data={"target": "ADT.Out", "csrf": csrf(confirm.text)}
    )
    assert done.status_code == 200  # followed the redirect to the new message
    session = store.session(env.session_id)
    assert len(session) == 2 and session[1].parent_id == str(env.message_id)
    assert session[1].status == Status.QUEUED
    audit = [e.detail for e in store.events(env.message_id) if e.event == "audit"]
    assert audit and audit[0].startswith("resend by local to ADT.Out")


def test_a_rebound_host_name_is_refused_and_so_is_a_post_from_another_origin(
    client: TestClient, store: MessageStore
) -> None:
    env = save(store, adt(1), status="error")
    # DNS rebinding: a page at evil.example whose name now resolves to 127.0.0.1.
    rebound = client.get("/messages", headers={"Host": "evil.example"})
    assert rebound.status_code == 400
    confirm = client.get(f"/messages/{env.message_id}/suspend")
    form = {"csrf": csrf(confirm.text)}
    foreign = client.post(
        f"/messages/{env.message_id}/suspend", data=form, headers={"Origin": "http://evil.example"}
    )
    assert foreign.status_code == 403
    assert store.header(env.message_id).status == Status.ERROR
    own = client.post(
        f"/messages/{env.message_id}/suspend", data=form, headers={"Origin": "http://127.0.0.1"}
    )
    assert own.status_code == 200 and store.header(env.message_id).status == Status.SUSPENDED


def test_a_viewer_bound_to_every_address_answers_to_this_machines_name() -> None:
    import socket

    from hie.web.server import reachable_names

    everywhere = reachable_names("0.0.0.0", ["hie.example.org"])
    assert everywhere[0] == "hie.example.org" and socket.gethostname() in everywhere
    assert reachable_names("10.1.2.3") == ["10.1.2.3"]
    assert reachable_names("127.0.0.1") == []  # loopback names are always allowed


def test_suspend_and_discard_are_audited(client: TestClient, store: MessageStore) -> None:
    env = save(store, adt(1), status="error")
    token = csrf(client.get(f"/messages/{env.message_id}/suspend").text)
    client.post(f"/messages/{env.message_id}/suspend", data={"csrf": token})
    assert store.header(env.message_id).status == Status.SUSPENDED
    client.post(f"/messages/{env.message_id}/discard", data={"csrf": token})
    assert store.header(env.message_id).status == Status.DISCARDED
    details = [e.detail for e in store.events(env.message_id) if e.event == "audit"]
    assert details == ["suspend by local", "discard by local"]


def test_resend_to_a_service_is_refused(client: TestClient, store: MessageStore) -> None:
    env = save(store, adt(1))
    token = csrf(client.get(f"/messages/{env.message_id}/resend").text)
    response = client.post(
        f"/messages/{env.message_id}/resend", data={"target": "ADT.In", "csrf": token}
    )
    assert response.status_code == 400 and "business process or operation" in response.text


@pytest.fixture
def login_client(settings: Settings, production: Any, store: MessageStore) -> TestClient:
    users = (
        f"olga:{hash_password('op-pass', iterations=1000)}:operator\n"
        f"vic:{hash_password('view-pass', iterations=1000)}:viewer"
    )
    app = create_web_app(
        settings,
        production,
        store=store,
        sender=Recorder(store),
        login_required=True,
        users=users,
        allowed_hosts=["hie.example.org"],
    )
    return TestClient(app, base_url="https://hie.example.org")


def login(client: TestClient, user: str, password: str) -> Any:
    token = csrf(client.get("/login").text)
    return client.post("/login", data={"username": user, "password": password, "csrf": token})


def test_login_is_required_off_loopback(login_client: TestClient, store: MessageStore) -> None:
    response = login_client.get("/messages", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
    assert login(login_client, "vic", "wrong").status_code == 401
    assert login(login_client, "vic", "view-pass").status_code == 200
    assert login_client.get("/messages").status_code == 200


def test_viewer_cannot_resend(login_client: TestClient, store: MessageStore) -> None:
    env = save(store, adt(1))
    login(login_client, "vic", "view-pass")
    page = login_client.get(f"/messages/{env.message_id}").text
    assert "Resend" not in page
    response = login_client.post(
        f"/messages/{env.message_id}/resend", data={"target": "ADT.Out", "csrf": csrf(page)}
    )
    assert response.status_code == 403 and len(store.session(env.session_id)) == 1


def test_operator_can_resend_after_login(login_client: TestClient, store: MessageStore) -> None:
    env = save(store, adt(1))
    login(login_client, "olga", "op-pass")
    token = csrf(login_client.get(f"/messages/{env.message_id}/resend").text)
    login_client.post(
        f"/messages/{env.message_id}/resend", data={"target": "ADT.Out", "csrf": token}
    )
    assert len(store.session(env.session_id)) == 2
    audit = [e.detail for e in store.events(env.message_id) if e.event == "audit"]
    assert audit[0].startswith("resend by olga")


def test_logout_ends_the_session_even_for_a_saved_copy_of_the_cookie(
    login_client: TestClient,
) -> None:
    assert login(login_client, "vic", "view-pass").status_code == 200
    saved = dict(login_client.cookies)
    assert login_client.get("/messages", follow_redirects=False).status_code == 200
    token = csrf(login_client.get("/messages").text)
    login_client.post("/logout", data={"csrf": token})
    login_client.cookies.clear()
    login_client.cookies.update(saved)  # the cookie as it was before logging out
    replay = login_client.get("/messages", follow_redirects=False)
    assert replay.status_code == 303 and replay.headers["location"].startswith("/login")


def test_failed_logins_are_throttled_per_user_name(login_client: TestClient) -> None:
    for _ in range(5):
        assert login(login_client, "olga", "guess").status_code == 401
    locked = login(login_client, "olga", "op-pass")  # even the right password waits now
    assert locked.status_code == 429 and "too many failed logins" in locked.text
    # Another user name is not held back by olga's failures.
    assert login(login_client, "vic", "view-pass").status_code == 200


def test_password_hashes_use_current_pbkdf2_parameters_and_old_ones_still_verify() -> None:
    new = hash_password("pw")
    assert new.startswith("pbkdf2_sha256$600000$")
    assert verify_password("pw", new) and not verify_password("px", new)
    assert verify_password("pw", hash_password("pw", iterations=260_000))


def test_items_page_without_manager_says_so(client: TestClient, store: MessageStore) -> None:
    save(store, adt(1), status="error")
    page = client.get("/items")
    assert page.status_code == 200 and "manager not running" in page.text
    token = csrf(page.text)
    done = client.post("/items/ADT.Out/disable", data={"csrf": token})
    assert "manager not running" in done.text
    assert client.post("/items/ADT.Out/disable").status_code == 403


def test_access_log_has_no_query_string(
    client: TestClient, store: MessageStore, caplog: pytest.LogCaptureFixture
) -> None:
    save(store, adt(1, mrn="SECRET42"))
    with caplog.at_level("INFO", logger="hie.web"):
        client.get("/messages", params={"field": "PID-3=SECRET42"})
    assert "GET /messages 200" in caplog.text and "SECRET42" not in caplog.text


def test_login_without_users_is_refused_at_start(settings: Settings, production: Any) -> None:
    from hie.errors import ConfigError

    with pytest.raises(ConfigError, match="no users are configured"):
        create_web_app(settings, production, login_required=True, users="")
    with pytest.raises(ConfigError, match="viewer or operator"):
        create_web_app(settings, production, users="ann:hash:admin")


class StateOnlySupervisor:
    """Answers the control socket's ``status`` the way the manager does: a list of items."""

    def __init__(self, production: Any) -> None:
        self.production = production
        self.name = production.name

    def snapshot(self) -> dict[str, Any]:
        return {
            "production": self.name,
            "items": [
                {"name": "ADT.In", "state": "running"},
                {"name": "ADT.Out", "state": "disabled"},
            ],
        }


def test_items_page_shows_each_items_state_from_the_manager(
    client: TestClient, settings: Settings, production: Any
) -> None:
    # Given a manager answering on the production's control socket
    run = RunDir.of(settings, production.name)
    run.path.mkdir(parents=True)
    server = ControlServer(StateOnlySupervisor(production), run.socket)  # type: ignore[arg-type]
    server.start()
    try:
        page = client.get("/items")
    finally:
        server.close()
    # Then each item's row carries the state the manager reported
    rows = {
        name: row
        for row in re.findall(r"<tr.*?</tr>", page.text, flags=re.S)
        for name in ("ADT.In", "ADT.Out")
        if f">{name}<" in row
    }
    assert "manager not running" not in page.text
    assert "<td>running</td>" in rows["ADT.In"] and "<td>disabled</td>" in rows["ADT.Out"]
