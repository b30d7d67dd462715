"""HL7Message: paths, escapes, delimiters, terminators, batches, ACKs, charsets, validation."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hie.errors import HL7ParseError, MessageError
from hie.hl7 import (
    Delimiters,
    HL7Message,
    ack_code,
    ack_control_id,
    build_ack,
    build_nak_for_unreadable,
    escape,
    parse_path,
    python_codec,
    sniff_charset,
    unreadable_charset,
    split_batch,
    unescape,
)

ADT = (
    "MSH|^~\\&|ADMIT|GENHOSP|LABSYS|GENLAB|20240311083000||ADT^A01^ADT_A01|CTRL0001|P|2.5.1"
    "|||AL|NE||UNICODE UTF-8\r"
    "EVN|A01|20240311083000\r"
    "PID|1||P1001^^^GENHOSP^MR&sub2~SSN-42^^^USA^SS||SMITH^ANNA^M\\S\\N^^MS||19700101|F"
    "|||12 HIGH ST^^LEEDS^^LS1 1AA||0113 555\\T\\777\r"
    "PV1|1|I|WARD7^12^B\r"
    "OBX|1|TX|NOTE||line one \\F\\ with pipe||||||F\r"
    "OBX|2|NM|HR||72||||||F\r"
    "ZPI|1|VIP\r"
)


@pytest.fixture
def adt() -> HL7Message:
    return HL7Message(ADT)


# -- paths ------------------------------------------------------------------------------------


def test_msh_numbering_follows_the_standard(adt: HL7Message) -> None:
    assert adt.get("MSH-1") == "|"
    assert adt.get("MSH-2") == "^~\\&"
    assert adt.get("MSH-3") == "ADMIT"
    assert adt.get("MSH-9") == "ADT^A01^ADT_A01"
    assert adt.get("MSH-9.1") == "ADT"
    assert adt.get("MSH-9.2") == "A01"
    assert adt.get("MSH-10") == "CTRL0001"


def test_components_repetitions_and_subcomponents(adt: HL7Message) -> None:
    assert adt.get("PID-3.1") == "P1001"
    assert adt.get("PID-3(1).1") == "P1001"
    assert adt.get("PID-3(2).1") == "SSN-42"
    assert adt.get("PID-3(2).5") == "SS"
    assert adt.get("PID-3.5.1") == "MR"
    assert adt.get("PID-3.5.2") == "sub2"
    assert adt.get("PID-5.1") == "SMITH"
    assert adt.get_all("PID-3(*).1") == ["P1001", "SSN-42"]
    assert adt.get_all("PID-3.1") == ["P1001", "SSN-42"]


def test_segment_repetition(adt: HL7Message) -> None:
    assert adt.get("OBX-5") == "line one | with pipe"
    assert adt.get("OBX(2)-5") == "72"
    assert adt.get_all("OBX(*)-5") == ["line one | with pipe", "72"]
    assert adt.get_all("OBX-3") == ["NOTE", "HR"]


def test_missing_things_return_the_default(adt: HL7Message) -> None:
    assert adt.get("PID-99") == ""
    assert adt.get("PID-3(3).1", "none") == "none"
    assert adt.get("PID-5.9") == ""
    assert adt.get("OBX(3)-5", "x") == "x"
    assert adt.get("NK1-2", "nobody") == "nobody"
    assert adt.get("PID-2", "empty") == "empty"  # an empty value is a missing value
    assert adt.get_all("NK1-2") == []


def test_bad_paths_are_refused(adt: HL7Message) -> None:
    for path in ("PID", "PID-0", "PID-3.x", "P-3", "PID-3(0)", "PID-3..1"):
        with pytest.raises(ValueError, match=r"HL7 path|start at 1"):
            adt.get(path)
    with pytest.raises(ValueError, match="get_all"):
        adt.get("OBX(*)-5")
    assert parse_path("obx(2)-5(3).1.2").segment == "OBX"


def test_leaf_values_are_decoded_structured_values_are_not(adt: HL7Message) -> None:
    # Given a component holding an escaped component separator
    # Then reading the leaf decodes it, and reading the whole field keeps ER7 as written
    assert adt.get("PID-5.3") == "M^N"
    assert adt.get("PID-5") == "SMITH^ANNA^M\\S\\N^^MS"
    assert adt.get("PID-13") == "0113 555&777"
    assert adt.get_raw("PID-13") == "0113 555\\T\\777"
    # A component that still has subcomponents is structure, not a leaf
    assert adt.get("PID-3.5") == "MR&sub2"


def test_message_properties(adt: HL7Message) -> None:
    assert adt.message_type == "ADT^A01"
    assert (adt.message_code, adt.trigger_event, adt.message_structure) == (
        "ADT",
        "A01",
        "ADT_A01",
    )
    assert adt.control_id == "CTRL0001"
    assert adt.version == "2.5.1"
    assert adt.charset == "UNICODE UTF-8"
    assert adt.processing_id == "P"
    assert (adt.accept_ack_type, adt.app_ack_type) == ("AL", "NE")
    assert (adt.sending_application, adt.sending_facility) == ("ADMIT", "GENHOSP")
    assert (adt.receiving_application, adt.receiving_facility) == ("LABSYS", "GENLAB")
    assert adt.segment_names() == ["MSH", "EVN", "PID", "PV1", "OBX", "OBX", "ZPI"]
    assert adt.segments("ZPI") == [["ZPI", "1", "VIP"]]
    assert adt.segments("MSH")[0][:4] == ["MSH", "|", "^~\\&", "ADMIT"]


# -- escapes ----------------------------------------------------------------------------------

D = Delimiters()


def test_escape_sequences_decode() -> None:
    assert unescape("a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f", D) == "a|b^c&d~e\\f"
    assert unescape("\\X0D0A\\", D) == "\r\n"
    assert unescape("caf\\XC3A9\\", D) == "café"
    # Formatting, unknown and unterminated sequences stay as written
    assert unescape("\\H\\bold\\N\\", D) == "\\H\\bold\\N\\"
    assert unescape("a\\.br\\b \\Zfoo\\", D) == "a\\.br\\b \\Zfoo\\"
    assert unescape("C:\\dir", D) == "C:\\dir"
    assert unescape("\\Xzz\\", D) == "\\Xzz\\"


@given(st.text())
def test_escape_round_trip(value: str) -> None:
    encoded = escape(value, D)
    assert not set("|^~&\r\n") & set(encoded)
    assert unescape(encoded, D) == value


@given(st.text(alphabet="|^~\\&#ab\r\n", max_size=30))
def test_set_then_get_round_trips_any_text(value: str) -> None:
    msg = HL7Message("MSH|^~\\&#|A||||||ADT^A01|1|P|2.7\rPID|1\r")
    msg.set("PID-5.2", value)
    assert msg.get("PID-5.2") == value
    assert msg.get("PID-5.1") == ""
    assert HL7Message(msg.to_er7()).get("PID-5.2") == value


# -- delimiters -------------------------------------------------------------------------------


def test_truncation_character_in_msh2() -> None:
    msg = HL7Message(
        "MSH|^~\\&#|APP|FAC|||20240101||ORU^R01^ORU_R01|9|P|2.7\rOBX|1|ST|X||a\\P\\b\r"
    )
    assert msg.delimiters.truncation == "#"
    assert msg.get("MSH-2") == "^~\\&#"
    assert msg.get("MSH-3") == "APP"
    assert msg.get("OBX-5") == "a#b"


def test_unusual_delimiters() -> None:
    text = "MSH$%*!@$APP$FAC$$$$$ADT%A04$C1$P$2.4\rPID$1$$ID1%%%AUTH*ID2$$DOE%JOHN@JR\r"
    msg = HL7Message(text)
    assert msg.delimiters == Delimiters("$", "%", "*", "!", "@", "")
    assert msg.message_type == "ADT^A04"
    assert msg.get("PID-3(2)") == "ID2"
    assert msg.get("PID-3.4") == "AUTH"
    assert msg.get("PID-5.2.2") == "JR"
    msg.set("PID-5.1", "O%Neil$")
    assert msg.get_raw("PID-5.1") == "O!S!Neil!F!"
    assert msg.get("PID-5.1") == "O%Neil$"
    assert msg.to_er7().startswith("MSH$%*!@$APP")


def test_string_literal_msh2_is_read_as_the_standard_one() -> None:
    msg = HL7Message("MSH|^~\\\\&|APP|FAC|||x||ADT^A01|1|P|2.6\r")
    assert msg.delimiters.encoding_chars == "^~\\&"
    assert msg.get("MSH-3") == "APP"


# -- terminators and round trips --------------------------------------------------------------


@pytest.mark.parametrize("terminator", ["\r", "\n", "\r\n"])
def test_any_terminator_is_read_and_written_as_cr(terminator: str) -> None:
    msg = HL7Message(ADT.replace("\r", terminator))
    assert msg.get("PV1-3.1") == "WARD7"
    assert msg.segment_names()[-1] == "ZPI"
    assert msg.to_er7() == ADT


@pytest.mark.parametrize("text", [ADT, ADT.rstrip("\r"), ADT + "\r", ADT.replace("EVN", "\rEVN")])
def test_unmodified_message_is_byte_identical(text: str) -> None:
    msg = HL7Message(text)
    msg.get("PID-3.1")
    msg.get_all("OBX-5")
    assert msg.to_er7() == text
    assert str(msg) == text
    assert HL7Message(text.encode("utf-8")).encode() == text.encode("utf-8")


def test_trailing_terminator_is_kept_or_left_out_after_edits() -> None:
    with_cr = HL7Message(ADT)
    with_cr.set("PID-8", "M")
    assert with_cr.to_er7().endswith("ZPI|1|VIP\r")
    without = HL7Message(ADT.rstrip("\r"))
    without.set("PID-8", "M")
    assert without.to_er7().endswith("ZPI|1|VIP")


# -- writing ----------------------------------------------------------------------------------


def test_set_creates_what_is_missing(adt: HL7Message) -> None:
    adt.set("PID-3(3).4.2", "X")
    assert adt.get_raw("PID-3(3)") == "^^^&X"
    adt.set("PV1-50", "V")
    assert adt.get("PV1-50") == "V"
    assert adt.get_raw("PV1-49") == ""
    adt.set("OBX(3)-5", "third")
    assert adt.segment_names() == ["MSH", "EVN", "PID", "PV1", "OBX", "OBX", "OBX", "ZPI"]
    adt.set("NK1-2.1", "NEXT")
    assert adt.segment_names()[-1] == "NK1"
    assert HL7Message(adt.to_er7()).get("OBX(3)-5") == "third"


def test_set_with_star(adt: HL7Message) -> None:
    adt.set("OBX(*)-11", "C")
    assert adt.get_all("OBX-11") == ["C", "C"]
    adt.set("PID-3(*)", "ONLY")
    assert adt.get_all("PID-3") == ["ONLY"]


def test_set_raw_and_get_raw(adt: HL7Message) -> None:
    adt.set_raw("PID-5", "JONES^BOB~JONES^ROBERT")
    assert adt.get_all("PID-5.2") == ["BOB", "ROBERT"]
    assert adt.get_raw("PID-5(*)") == "JONES^BOB~JONES^ROBERT"
    adt.set_raw("ZPI-2", "a|b")  # a raw value may carry structure, fields included
    assert adt.get("ZPI-3") == "b"
    with pytest.raises(ValueError, match="terminator"):
        adt.set_raw("PID-5", "x\rEVIL|1")
    with pytest.raises(ValueError, match="delimiters"):
        adt.set("MSH-2", "^~\\&")


def test_add_and_remove_segments(adt: HL7Message) -> None:
    adt.add_segment("ZAB|1|extra")
    assert adt.get("ZAB-2") == "extra"
    assert adt.remove_segments("OBX") == 2
    assert "OBX" not in adt.segment_names()
    assert adt.get("ZAB-2") == "extra"
    with pytest.raises(ValueError):
        adt.add_segment("not a segment")
    with pytest.raises(ValueError):
        adt.remove_segments("MSH")


def test_copy_is_independent(adt: HL7Message) -> None:
    other = adt.copy()
    other.set("PID-8", "M")
    assert adt.get("PID-8") == "F"


# -- malformed input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no MSH segment at the start"),
        ("PID|1||123\r", "no MSH segment at the start"),
        ("\rMSH|^~\\&|A|||||ADT^A01|1|P|2.5", "no MSH segment at the start"),
        ("MSH|^~|A|||||ADT^A01|1|P|2.5", "MSH-2 encoding characters '\\^~' are invalid"),
        ("MSH|^^\\&|A|||||ADT^A01|1|P|2.5", "MSH-2 encoding characters"),
        ("MSH|^~\\|&|A|||||ADT^A01|1|P|2.5", "MSH-2 encoding characters"),
        ("MSHA^~\\&A|||||ADT^A01|1|P|2.5", "MSH-1 field separator 'A' is invalid"),
        ("MSH|^~\\&|A|B|C|D|20240101|||1|P|2.5", "MSH-9 is empty; every message needs a type"),
    ],
)
def test_malformed_input_raises_with_reason(text: str, reason: str) -> None:
    with pytest.raises(HL7ParseError) as info:
        HL7Message(text)
    assert reason.replace("'\\^~'", "'^~'") in info.value.reason


def test_undecodable_bytes_raise_parse_error() -> None:
    with pytest.raises(HL7ParseError, match="not valid utf-8"):
        HL7Message(b"MSH|^~\\&|A|||||ADT^A01|1|P|2.5\rPID|1||\xff\xfe\r")


# -- charsets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msh18", "codec"),
    [
        ("UNICODE UTF-8", "utf-8"),
        ("UNICODE", "utf-8"),
        ("unicode utf-8", "utf-8"),
        ("8859/1", "iso8859-1"),
        ("8859/2", "iso8859-2"),
        ("8859/15", "iso8859-15"),
        ("ASCII", "ascii"),
        ("ISO IR6", "ascii"),
        ("ISO IR100", "iso8859-1"),
        ("ISO_IR 100", "iso8859-1"),
        ("ISO IR192", "utf-8"),
        ("UTF-8", "utf-8"),
        ("windows-1252", "cp1252"),
        ("", "utf-8"),
        (None, "utf-8"),
        ("NO-SUCH-CHARSET", "utf-8"),
        ("CNS 11643-1992", "utf-8"),
    ],
)
def test_python_codec(msh18: str | None, codec: str) -> None:
    assert python_codec(msh18) == codec


def test_unknown_charset_uses_the_given_default() -> None:
    assert python_codec("KLINGON", default="latin-1") == "iso8859-1"


@pytest.mark.parametrize("name", ["base64", "zlib_codec", "rot13", "hex", "bz2_codec", "uu"])
def test_codecs_that_are_not_character_sets_are_never_used_and_are_named(name: str) -> None:
    assert python_codec(name) == "utf-8"
    reason = unreadable_charset(name)
    assert reason is not None and name in reason and "not a character set" in reason


@pytest.mark.parametrize("msh18", ["UNICODE UTF-8", "8859/1", "latin1", "KLINGON", "", None])
def test_character_sets_and_unknown_names_are_not_refused(msh18: str | None) -> None:
    assert unreadable_charset(msh18) is None


def test_sniff_charset_and_decode_latin1() -> None:
    text = "MSH|^~\\&|A|B|C|D|x||ADT^A01|1|P|2.5||||||8859/1~UNICODE UTF-8\rPID|1||1||MÜLLER\r"
    raw = text.encode("latin-1")
    assert sniff_charset(raw) == "8859/1"
    assert sniff_charset(b"PID|1\r") is None
    assert sniff_charset(b"MSH|^~\\&|A|B\r") is None
    msg = HL7Message(raw)
    assert msg.get("PID-5") == "MÜLLER"
    assert msg.encode() == raw
    assert msg.encode("UNICODE UTF-8") == text.encode("utf-8")
    with pytest.raises(MessageError, match="cannot be written as ascii"):
        msg.encode("ASCII")


# -- batches ----------------------------------------------------------------------------------


def test_split_batch_with_envelopes() -> None:
    one = "MSH|^~\\&|A|B|C|D|x||ADT^A01|1|P|2.5\rPID|1||ID1\r"
    two = "MSH|^~\\&|A|B|C|D|x||ADT^A08|2|P|2.5\rPID|1||ID2\r"
    batch = f"FHS|^~\\&|A\rBHS|^~\\&|A\r{one}{two}BTS|2\rFTS|1\r"
    messages = split_batch(batch)
    assert [m.to_er7() for m in messages] == [one, two]
    assert [m.control_id for m in messages] == ["1", "2"]


def test_split_batch_several_msh_with_blank_lines_and_lf() -> None:
    one = "MSH|^~\\&|A|B|C|D|x||ADT^A01|1|P|2.5\nPID|1||ID1\n"
    two = "MSH|^~\\&|A|B|C|D|x||ADT^A08|2|P|2.5\nPID|1||ID2"
    messages = split_batch(("\n\n" + one + "\n\n" + two).encode())
    assert [m.get("PID-3") for m in messages] == ["ID1", "ID2"]
    assert messages[1].to_er7() == two.replace("\n", "\r")


def test_split_single_message_round_trips() -> None:
    assert [m.to_er7() for m in split_batch(ADT)] == [ADT]
    assert split_batch("") == []


def test_split_batch_skips_lines_outside_messages(caplog: pytest.LogCaptureFixture) -> None:
    messages = split_batch("junk\rmore junk\rMSH|^~\\&|A|||||ADT^A01|1|P|2.5\r")
    assert len(messages) == 1
    assert "skipped 2 line(s)" in caplog.text


def test_split_batch_reports_a_malformed_message() -> None:
    with pytest.raises(HL7ParseError, match="MSH-9 is empty"):
        split_batch("MSH|^~\\&|A|||||ADT^A01|1|P|2.5\rMSH|^~\\&|A|||||||2|P|2.5\r")


# -- ACKs -------------------------------------------------------------------------------------


def test_ack_swaps_parties_and_echoes_ids(adt: HL7Message) -> None:
    ack = build_ack(adt)
    assert ack.get("MSH-3") == "LABSYS" and ack.get("MSH-4") == "GENLAB"
    assert ack.get("MSH-5") == "ADMIT" and ack.get("MSH-6") == "GENHOSP"
    assert ack.get("MSH-9") == "ACK^A01^ACK"
    assert ack.control_id not in ("", adt.control_id)
    assert build_ack(adt).control_id != ack.control_id
    assert re.fullmatch(r"\d{14}[+-]\d{4}", ack.get("MSH-7"))
    assert (ack.get("MSH-11"), ack.version, ack.charset) == ("P", "2.5.1", "UNICODE UTF-8")
    assert ack.get("MSH-15") == ""
    assert ack_code(ack) == "AA"
    assert ack_control_id(ack) == "CTRL0001"
    assert ack_code(ack.to_er7().encode()) == "AA"
    assert ack.segment_names() == ["MSH", "MSA"]


def test_ack_keeps_the_delimiters() -> None:
    msg = HL7Message("MSH$%*!@$APP$FAC$$$$$ADT%A04$C1$P$2.4\r")
    ack = build_ack(msg, "CA", control_id="MINE")
    assert ack.to_er7().startswith("MSH$%*!@$$$APP$FAC$")
    assert ack.get("MSH-9") == "ACK%A04%ACK"
    assert (ack.control_id, ack_code(ack), ack_control_id(ack)) == ("MINE", "CA", "C1")


def test_ack_with_error_v25_layout(adt: HL7Message) -> None:
    ack = build_ack(
        adt, "AE", error="PID-3 has no MR id | check", error_location="PID-3.1", error_code="101"
    )
    assert ack.segment_names() == ["MSH", "MSA", "ERR"]
    assert ack.get("MSA-3") == "PID-3 has no MR id | check"
    assert ack.get_raw("ERR-2") == "PID^1^3^1^1"
    assert ack.get("ERR-3.1") == "101"
    assert ack.get("ERR-3.2") == "Required field missing"
    assert ack.get("ERR-3.3") == "HL70357"
    assert ack.get("ERR-4") == "E"
    assert ack.get("ERR-8") == "PID-3 has no MR id | check"


def test_ack_with_error_before_v25_uses_err1() -> None:
    msg = HL7Message("MSH|^~\\&|A|B|C|D|x||ORM^O01|77|P|2.3\r")
    ack = build_ack(msg, "AR", error="bad", error_location="ORC-1")
    assert ack.get("MSH-9") == "ACK^O01"  # no MSH-9.3 before v2.3.1
    assert ack.get_raw("ERR-1") == "ORC^1^1^207&Application internal error&HL70357"
    assert ack.get("MSA-3") == "bad"


def test_ack_refuses_unknown_codes(adt: HL7Message) -> None:
    with pytest.raises(ValueError, match="ACK code"):
        build_ack(adt, "OK")


def test_nak_for_unreadable_recovers_what_it_can() -> None:
    raw = b"\x00\x01MSH|^~\\&|SND|SF|RCV|RF|x||ADT^A01|ID77|T|2.4\rPID|\xff"
    nak = build_nak_for_unreadable(raw, "bytes are not UTF-8")
    assert (nak.get("MSH-3"), nak.get("MSH-5")) == ("RCV", "SND")
    assert nak.get("MSH-9") == "ACK^A01^ACK"
    assert (nak.get("MSH-11"), nak.version) == ("T", "2.4")
    assert (ack_code(nak), ack_control_id(nak)) == ("AR", "ID77")
    assert nak.get("MSA-3") == "bytes are not UTF-8"


@pytest.mark.parametrize("raw", [b"", b"garbage", "MSH", b"MSH|^|broken", b"MSHAAAA"])
def test_nak_for_unreadable_falls_back_to_defaults(raw: bytes | str) -> None:
    nak = build_nak_for_unreadable(raw, "cannot read MSH")
    assert nak.delimiters == Delimiters()
    assert (nak.version, ack_code(nak), ack_control_id(nak)) == ("2.5", "AR", "")
    assert nak.get("ERR-3.1") == "100"
    assert nak.get("ERR-8") == "cannot read MSH"


# -- validation with hl7apy (slow, optional) --------------------------------------------------

GOOD_ADT = (
    "MSH|^~\\&|ADMIT|GENHOSP|LABSYS|GENLAB|20240311083000||ADT^A01^ADT_A01|CTRL0001|P|2.5\r"
    "EVN|A01|20240311083000\r"
    "PID|1||P1001^^^GENHOSP^MR||SMITH^ANNA||19700101|F\r"
    "PV1|1|I|WARD7^12^B\r"
)


def test_valid_message_has_no_problems() -> None:
    assert HL7Message(GOOD_ADT).validate() == []
    assert HL7Message(GOOD_ADT + "ZPI|1|VIP\r").validate() == []


def test_invalid_message_lists_problems() -> None:
    # PV1 is required in ADT^A01; FOO is no segment at all
    bad = HL7Message(GOOD_ADT.replace("PV1|1|I|WARD7^12^B\r", "") + "FOO|1\r")
    problems = bad.validate()
    assert problems
    assert any("PV1" in p for p in problems), problems


def test_validation_needs_a_known_version() -> None:
    assert "cannot be validated" in HL7Message(GOOD_ADT.replace("|2.5\r", "|9.9\r")).validate()[0]


def test_to_hl7apy_gives_a_parsed_copy() -> None:
    msg = HL7Message(GOOD_ADT.replace("\r", "\n"))
    parsed = msg.to_hl7apy()
    assert parsed.msh.msh_10.value == "CTRL0001"
    assert msg.to_er7() == GOOD_ADT
