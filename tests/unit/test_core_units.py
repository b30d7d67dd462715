"""Pure pieces of the core: public names, envelopes, priorities, the hook chain."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from pydantic import ValidationError

import hie
from hie.errors import Retry, SkipMessage
from hie.hooks import HookChain, MessageHook
from hie.messages import BODY_HL7, BODY_TEXT, Envelope, Message
from hie.production import Item, Production
from hie.tasks.dispatcher import broker_priority


def test_public_names_are_exported_and_importable() -> None:
    assert sorted(hie.__all__) == hie.__all__
    for name in hie.__all__:
        assert getattr(hie, name) is not None, name


class Order(Message):
    patient: str
    tests: list[str]


def test_envelope_round_trips_model_and_hl7_bodies_through_the_wire() -> None:
    model = Envelope.wrap(Order(patient="1", tests=["CBC"]), target="X")
    again = Envelope.from_wire(model.to_wire())
    assert again == model and again.payload() == Order(patient="1", tests=["CBC"])
    hl7 = Envelope.wrap("MSH|^~\\&|A|B\rPID|1\r")
    assert hl7.body_type == BODY_HL7 and Envelope.wrap("plain").body_type == BODY_TEXT


def test_message_and_session_ids_are_time_ordered_uuid7() -> None:
    # Ids that grow with time keep the store's id indexes appending at their end
    made = [Envelope.wrap("x") for _ in range(2_000)]
    made += [m.child("y", target="Op", source="Router") for m in made[-3:]]
    ids = [e.message_id for e in made]
    assert {i.version for i in ids} == {7}
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    # Stored as text, they sort the same way
    assert [str(i) for i in ids] == sorted(str(i) for i in ids)
    sessions = [e.session_id for e in made[:2_000]]
    assert {s.version for s in sessions} == {7} and sessions == sorted(sessions)


def _ids_in_a_fork(conn: Any) -> None:
    conn.send([str(Envelope.wrap("x").message_id) for _ in range(2_000)])
    conn.close()


def test_forked_workers_do_not_repeat_each_others_ids() -> None:
    # Celery's prefork children are forks: each must draw its own ids, also within one millisecond
    import multiprocessing

    Envelope.wrap("warm the generator up in the parent")
    ctx = multiprocessing.get_context("fork")
    pipes = [ctx.Pipe(duplex=False) for _ in range(2)]
    children = [ctx.Process(target=_ids_in_a_fork, args=(w,)) for _, w in pipes]
    for child in children:
        child.start()
    mine = {str(Envelope.wrap("x").message_id) for _ in range(2_000)}
    theirs = [set(r.recv()) for r, _ in pipes]
    for child in children:
        child.join(10)
    assert all(len(t) == 2_000 for t in theirs)
    assert not (mine & theirs[0]) and not (mine & theirs[1]) and not (theirs[0] & theirs[1])
    # Nor their random parts (the 74 bits after the time): a random state copied by the fork
    # would repeat them, and only a different millisecond would keep the ids apart
    random_parts = [{UUID(i).int & ((1 << 74) - 1) for i in ids} for ids in (mine, *theirs)]
    assert not (random_parts[0] & random_parts[1]) and not (random_parts[1] & random_parts[2])


def test_child_and_reply_keep_session_and_correlate() -> None:
    parent = Envelope.wrap("x", priority=8, key="p1")
    child = parent.child("y", target="Op", source="Router")
    assert (child.session_id, child.parent_id, child.priority, child.key) == (
        parent.session_id,
        parent.message_id,
        8,
        "p1",
    )
    reply = child.reply("ack", source="Op")
    assert reply.correlation_id == child.message_id and reply.session_id == parent.session_id


def test_priority_is_bounded_and_mapped_per_broker() -> None:
    with pytest.raises(ValidationError):
        Envelope.wrap("x", priority=10)
    # Redis serves 0 first, RabbitMQ the highest first: HIE's 9 is the most urgent on both.
    assert broker_priority(9, redis=True) == 0 and broker_priority(0, redis=True) == 9
    assert broker_priority(9, redis=False) == 9


class Journal(MessageHook):
    def __init__(
        self, tag: str, log: list[str], fail: str | None = None, optional: bool = False
    ) -> None:
        self.tag, self.log, self.fail, self.optional = tag, log, fail, optional

    def before_process(self, host: Any, message: Any) -> None:
        self.log.append(f"{self.tag}.before")
        if self.fail == "before":
            raise RuntimeError(f"{self.tag} broke")
        if self.fail == "skip":
            raise SkipMessage("not for us")

    def after_process(
        self, host: Any, message: Any, *, result: Any = None, error: Any = None
    ) -> None:
        self.log.append(f"{self.tag}.after:{'error' if error else result}")

    def on_error(self, host: Any, message: Any, error: BaseException) -> None:
        self.log.append(f"{self.tag}.on_error")


def _run(chain: HookChain, log: list[str], host_result: Any = "r") -> None:
    with chain.processing(None, Envelope.wrap("x")) as outcome:  # type: ignore[arg-type]
        log.append("host")
        if isinstance(host_result, BaseException):
            raise host_result
        outcome.reply = host_result


def test_hook_chain_order_and_results() -> None:
    log: list[str] = []
    _run(HookChain([Journal("A", log), Journal("B", log)]), log)
    assert log == ["A.before", "B.before", "host", "B.after:r", "A.after:r"]


def test_a_broken_required_hook_fails_the_message_with_its_name() -> None:
    log: list[str] = []
    with pytest.raises(RuntimeError) as caught:
        _run(HookChain([Journal("A", log), Journal("B", log, fail="before")]), log)
    assert "raised by hook Journal.before_process" in caught.value.__notes__[0]
    assert "host" not in log and log[-1] == "A.after:error"


def test_a_broken_optional_hook_is_logged_and_the_message_goes_on() -> None:
    log: list[str] = []
    _run(HookChain([Journal("A", log, fail="before", optional=True)]), log)
    assert log == ["A.before", "host", "A.after:r"]


def test_skip_and_retry_propagate_without_on_error() -> None:
    log: list[str] = []
    with pytest.raises(SkipMessage):
        _run(HookChain([Journal("A", log, fail="skip")]), log)
    log.clear()
    with pytest.raises(Retry):
        _run(HookChain([Journal("A", log)]), log, host_result=Retry(delay=1))
    assert log == ["A.before", "host", "A.after:error"]


def test_production_edges_and_item_names_are_validated() -> None:
    production = Production(
        name="P",
        items=[
            Item(name="A", class_name="FileService", targets=["B"], settings={"file_path": "/t"}),
            Item(name="B", class_name="FileOperation", settings={"file_path": "/t"}),
        ],
    )
    assert production.edges() == [("A", "B")]
    with pytest.raises(ValidationError):
        Item(name="bad name!", class_name="X")


def test_a_broker_that_does_not_answer_is_named_without_its_password() -> None:
    import socket

    from hie.broker import broker_problem, ensure_broker
    from hie.errors import ConfigError
    from hie.settings import Settings

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = Settings(broker_url=f"redis://:s3cret@127.0.0.1:{port}/0")
    with pytest.raises(ConfigError) as error:
        ensure_broker(settings)
    assert f"127.0.0.1:{port}" in str(error.value) and "s3cret" not in str(error.value)
    # What /health/ready says about it, too.
    problem = broker_problem(settings.broker_url, timeout=1)
    assert problem is not None and f":**@127.0.0.1:{port}" in problem and "s3cret" not in problem
