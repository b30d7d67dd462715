"""IRIS ``ReplyCodeActions``: what an outbound HL7 operation does with each ACK (or error).

A setting such as ``:?R=RF,:?E=S,:~=S,:?A=C,:*=S`` is parsed once (``ReplyCodeActions.parse``,
which names the first pair that is wrong) and evaluated against each send's ``Reply`` into a
``Decision``: complete, retry, suspend, disable or fail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hie.errors import ConfigError

#: IRIS's default for HL7 operations: reject = retry then fail, error / no MSA / anything else
#: = suspend, accept = completed, control id mismatch = warning, reply type mismatch = completed.
DEFAULT_REPLY_CODE_ACTIONS = ":?R=RF,:?E=S,:~=S,:?A=C,:*=S,:I?=W,:T?=C"

_ACTION_LETTERS = frozenset("CWRSDF")
_MSA_CODES = {"?A": ("AA", "CA"), "?E": ("AE", "CE"), "?R": ("AR", "CR")}


@dataclass(frozen=True)
class ReplyRule:
    """One ``<code>=<actions>`` pair of a ReplyCodeActions setting."""

    code: str
    actions: str

    @property
    def warn_only(self) -> bool:
        """Rules whose actions are only ``W`` are all evaluated; the others, first match wins."""
        return set(self.actions) == {"W"}


@dataclass(frozen=True)
class Reply:
    """What an operation observed about one send: the ACK it read, or the error it met.

    ``msa1`` is None when the reply has no MSA segment; ``error`` is set (and the other fields
    unused) when no reply frame came back at all.
    """

    msa1: str | None = None
    control_id_matches: bool = True
    type_matches: bool = True
    error: str | None = None


@dataclass(frozen=True)
class Decision:
    """What to do with a message: ``action`` is C, R, S, D or F; ``then`` follows an R."""

    action: str
    reason: str
    then: str = "F"
    warnings: tuple[str, ...] = field(default_factory=tuple)


class ReplyCodeActions:
    """IRIS ``ReplyCodeActions``: ``<code>=<actions>,...``, evaluated against one reply.

    Codes (after a colon, about the ACK): ``:AA`` or any literal MSA-1 value; ``:?A`` AA or CA;
    ``:?E`` AE or CE; ``:?R`` AR or CR; ``:_`` an empty MSA-1; ``:*`` any MSA-1 value no other
    MSA-1 code in the list matched; ``:~`` no MSA segment; ``:I?`` MSA-2 is not the MSH-10 sent;
    ``:T?`` the reply is not an ACK. Codes without a colon are about the send itself: ``E`` any
    error, ``E*<text>`` an error whose text contains ``<text>``, ``X`` no reply at all.

    Actions, alone or combined: ``C`` completed, ``W`` warn (completed unless another action
    applies), ``R`` retry per retry_interval / failure_timeout and then fail, or suspend with
    ``S``, or disable with ``D``; ``S`` suspend; ``D`` disable; ``F`` fail. Rules that only warn
    are all evaluated; of the others the first match, left to right, decides. No match:
    completed; an error no rule matches: retried, then failed.

    One deliberate difference from IRIS: an ACK whose MSA-2 is not the MSH-10 just sent is
    retried (then failed) unless ``:I?`` names an action other than ``W``. On a connection kept
    open, such an ACK means the stream is out of step, and taking it as this message's ACK could
    mark as delivered a message the peer never acknowledged.

    Example::

        actions = ReplyCodeActions.parse(":?R=RF,:?E=S,:*=S")
        actions.evaluate(Reply(msa1="AE")).action  # "S"
    """

    def __init__(self, rules: list[ReplyRule]) -> None:
        self.rules = rules

    @classmethod
    def parse(cls, text: str) -> ReplyCodeActions:
        """Parse a setting; raises ``ConfigError`` naming the first pair that is wrong."""
        rules: list[ReplyRule] = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            code, sep, actions = part.rpartition("=")
            code, actions = code.strip(), actions.strip().upper()
            if not sep or not code:
                raise ConfigError(f"reply code action {part!r} is not <code>=<actions>")
            if not actions or not set(actions) <= _ACTION_LETTERS:
                raise ConfigError(
                    f"reply code action {part!r}: actions must be letters of C W R S D F"
                )
            _check_code(code, part)
            rules.append(
                ReplyRule(code if code.startswith(("E*", "e*")) else code.upper(), actions)
            )
        return cls(rules)

    def __str__(self) -> str:
        return ",".join(f"{r.code}={r.actions}" for r in self.rules)

    def evaluate(self, reply: Reply) -> Decision:
        """The decision for ``reply`` (see the class docstring for the rules)."""
        warnings = tuple(
            f"{r.code} matched" for r in self.rules if r.warn_only and self._match(r, reply)
        )
        if not reply.control_id_matches and reply.error is None:
            # An ACK for another message says nothing about this one: only :I? may decide.
            for rule in self.rules:
                if rule.code == ":I?" and not rule.warn_only:
                    return _decision(rule, reply, warnings)
            return Decision("R", "the ACK's MSA-2 is not the control id sent", "F", warnings)
        for rule in self.rules:
            if not rule.warn_only and self._match(rule, reply):
                return _decision(rule, reply, warnings)
        if reply.error is not None:
            return Decision("R", reply.error, "F", warnings)
        return Decision("C", "no reply code action matched", warnings=warnings)

    def _match(self, rule: ReplyRule, reply: Reply) -> bool:
        code = rule.code
        if reply.error is not None:
            if code == "E" or code == "X":
                return True
            return code.startswith("E*") and code[2:].lower() in reply.error.lower()
        if not code.startswith(":"):
            return False
        key = code[1:]
        if key == "~":
            return reply.msa1 is None
        if key == "I?":
            return not reply.control_id_matches
        if key == "T?":
            return not reply.type_matches
        if reply.msa1 is None:
            return False
        if key == "*":
            return not any(
                self._msa_match(r.code[1:], reply.msa1)
                for r in self.rules
                if r.code.startswith(":") and r.code[1:] not in ("*", "~", "I?", "T?")
            )
        return self._msa_match(key, reply.msa1)

    @staticmethod
    def _msa_match(key: str, msa1: str) -> bool:
        if key == "_":
            return msa1 == ""
        if key in _MSA_CODES:
            return msa1.upper() in _MSA_CODES[key]
        return msa1.upper() == key


def _check_code(code: str, part: str) -> None:
    upper = code.upper()
    if upper.startswith("E#"):
        raise ConfigError(
            f"reply code action {part!r}: E#<statuscode> matches IRIS status codes, which HIE "
            "does not have; use E*<text> to match the error's text"
        )
    if upper in ("E", "X") or upper.startswith("E*"):
        return
    if not re.fullmatch(r":(\?[AER]|[*_~]|I\?|T\?|[A-Z0-9]{1,5})", upper):
        raise ConfigError(
            f"reply code action {part!r}: unknown code {code!r}; use :<MSA-1 value>, :?A, :?E, "
            ":?R, :_, :*, :~, :I?, :T?, E, E*<text> or X"
        )


def _decision(rule: ReplyRule, reply: Reply, warnings: tuple[str, ...]) -> Decision:
    what = f"reply {reply.error or f'MSA-1 {reply.msa1!r}'} matched {rule.code}={rule.actions}"
    letters = rule.actions
    if "R" in letters:
        then = "S" if "S" in letters else "D" if "D" in letters else "F"
        return Decision("R", what, then, warnings)
    action = next((a for a in "DSF" if a in letters), "C")
    return Decision(action, what, warnings=warnings)
