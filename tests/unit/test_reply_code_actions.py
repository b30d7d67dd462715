"""IRIS ReplyCodeActions: parsing the setting, and what each reply leads to."""

from __future__ import annotations

import pytest

from hie.errors import ConfigError
from hie.hl7.reply_code_actions import DEFAULT_REPLY_CODE_ACTIONS, Reply, ReplyCodeActions

DEFAULT = ReplyCodeActions.parse(DEFAULT_REPLY_CODE_ACTIONS)


def test_default_setting_parses_into_seven_rules_and_prints_back() -> None:
    assert len(DEFAULT.rules) == 7
    assert str(DEFAULT) == DEFAULT_REPLY_CODE_ACTIONS


@pytest.mark.parametrize(
    ("msa1", "action", "then"),
    [
        ("AA", "C", "F"),
        ("CA", "C", "F"),
        ("AE", "S", "F"),
        ("CE", "S", "F"),
        ("AR", "R", "F"),
        ("CR", "R", "F"),
        ("ZZ", "S", "F"),  # :*=S, anything not matched otherwise
        ("", "S", "F"),  # an empty MSA-1 is a value too; :* takes it when no :_ rule exists
    ],
)
def test_default_actions_per_msa1(msa1: str, action: str, then: str) -> None:
    decision = DEFAULT.evaluate(Reply(msa1=msa1))
    assert (decision.action, decision.then) == (action, then)
    assert decision.warnings == ()


def test_reply_without_msa_is_suspended_by_default() -> None:
    assert DEFAULT.evaluate(Reply(msa1=None)).action == "S"


def test_control_id_mismatch_warns_and_is_retried_not_completed() -> None:
    decision = DEFAULT.evaluate(Reply(msa1="AA", control_id_matches=False))
    assert (decision.action, decision.then) == ("R", "F")
    assert decision.warnings == (":I? matched",)
    assert "MSA-2" in decision.reason


def test_control_id_mismatch_takes_an_explicit_non_warning_i_rule() -> None:
    actions = ReplyCodeActions.parse(":I?=S,:?A=C")
    assert actions.evaluate(Reply(msa1="AA", control_id_matches=False)).action == "S"


def test_reply_type_mismatch_completes_by_default() -> None:
    assert DEFAULT.evaluate(Reply(msa1="AA", type_matches=False)).action == "C"
    only_t = ReplyCodeActions.parse(":T?=F")
    assert only_t.evaluate(Reply(msa1="AA", type_matches=False)).action == "F"


def test_first_matching_non_warning_rule_wins_left_to_right() -> None:
    actions = ReplyCodeActions.parse(":AE=F,:?E=S")
    assert actions.evaluate(Reply(msa1="AE")).action == "F"
    assert actions.evaluate(Reply(msa1="CE")).action == "S"


def test_warning_only_rules_all_fire_and_complete_when_nothing_else_matches() -> None:
    actions = ReplyCodeActions.parse(":?E=W,:AE=W,:?R=S")
    decision = actions.evaluate(Reply(msa1="AE"))
    assert decision.action == "C"
    assert decision.warnings == (":?E matched", ":AE matched")


def test_star_matches_only_values_no_other_msa_rule_takes_even_when_listed_first() -> None:
    actions = ReplyCodeActions.parse(":*=S,:?A=C")
    assert actions.evaluate(Reply(msa1="AA")).action == "C"
    assert actions.evaluate(Reply(msa1="AE")).action == "S"


def test_empty_msa1_code() -> None:
    actions = ReplyCodeActions.parse(":_=F,:*=S")
    assert actions.evaluate(Reply(msa1="")).action == "F"


@pytest.mark.parametrize(
    ("setting", "action", "then"),
    [(":?E=RS", "R", "S"), (":?E=RD", "R", "D"), (":?E=R", "R", "F"), (":?E=D", "D", "F")],
)
def test_retry_combinations(setting: str, action: str, then: str) -> None:
    decision = ReplyCodeActions.parse(setting).evaluate(Reply(msa1="AE"))
    assert (decision.action, decision.then) == (action, then)


def test_errors_of_the_send_match_e_x_and_e_text_else_retry() -> None:
    timeout = Reply(error="no ACK from 127.0.0.1:1 within 1s")
    assert DEFAULT.evaluate(timeout).action == "R"
    assert ReplyCodeActions.parse("E*within=S").evaluate(timeout).action == "S"
    assert ReplyCodeActions.parse("E*refused=S").evaluate(timeout).action == "R"
    assert ReplyCodeActions.parse("X=F").evaluate(timeout).action == "F"
    assert ReplyCodeActions.parse("E=C").evaluate(timeout).action == "C"
    # MSA codes never match a send that got no reply.
    assert ReplyCodeActions.parse(":*=S").evaluate(timeout).action == "R"


def test_no_rule_matches_means_completed() -> None:
    assert ReplyCodeActions.parse(":?E=S").evaluate(Reply(msa1="AA")).action == "C"


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        (":?A", "<code>=<actions>"),
        ("=C", "<code>=<actions>"),
        (":?A=Q", "letters of C W R S D F"),
        (":?Q=C", "unknown code"),
        ("AA=C", "unknown code"),
        ("E#5001=S", "E*<text>"),
    ],
)
def test_bad_settings_name_the_pair_and_the_rule(setting: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        ReplyCodeActions.parse(setting)
    assert words in str(info.value)
    assert setting in str(info.value)


def test_spaces_case_and_empty_pairs_are_tolerated() -> None:
    actions = ReplyCodeActions.parse(" :?e = s , , :aa=c ")
    assert [(r.code, r.actions) for r in actions.rules] == [(":?E", "S"), (":AA", "C")]
