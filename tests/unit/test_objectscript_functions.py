"""ObjectScript $ functions in rule and DTL expressions, against the InterSystems documentation.

Each group names its page (docs.intersystems.com, DocBook KEY=...): the page's own examples
where it gives them, otherwise cases built from the rules the page states.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hie.errors import ConfigError, MessageError
from hie.rules.expressions import Context, compile_expression

# The moment of the Dates tutorial's examples, where $HOROLOG read 57973,50111.
NOW = datetime(1999, 9, 22, 13, 55, 11)


def ev(text: str, **ctx: object) -> object:
    context = Context(now=NOW, **ctx)  # type: ignore[arg-type]
    return compile_expression(text).evaluate(context)


def check(cases: list[tuple[str, object]], **ctx: object) -> None:
    for text, expected in cases:
        assert ev(text, **ctx) == expected, text


# Tutorial "String Functions" and "String Functions, continued" (TOS_StringFunctions1/2).
STRING_TUTORIAL = [
    ('$length("how long is this?")', 17),
    ('$extract("there\'s gold in those hills", 9, 12)', "gold"),
    ('$extract("there\'s gold in those hills", *-4, *)', "hills"),
    ('$find("there\'s gold in those hills", "gold")', 13),
    ('$piece("slice of cheese pizza", " ", 4)', "pizza"),
    ('$piece("slice of cheese pizza", " ", *-1)', "cheese"),
    ("$justify(3.1415, 10, 3)", "     3.142"),
    ('$piece("slice of cheese pizza", " ", 1, 2)', "slice of"),
    ('$piece("slice of cheese pizza", " ", *-1, *)', "cheese pizza"),
    ('$piece("slice of cheese pizza", "i", 2)', "ce of cheese p"),
    ('$piece("slice of cheese pizza", "z", 2)', ""),
    ('$piece("One Memorial Drive^Cambridge^MA^02142", "^", 2)', "Cambridge"),
    ('$length("slice of cheese pizza", " ")', 4),
]

# $EXTRACT (RCOS_fextract): single characters of "ABCD", and "Alabama" from "1234Alabama567".
EXTRACT = [
    ('$EXTRACT("ABCD")', "A"),
    ('$EXTRACT("ABCD",2)', "B"),
    ('$EXTRACT("ABCD",*)', "D"),
    ('$EXTRACT("ABCD",*-2)', "B"),
    ('$EXTRACT("ABCD",*-0)', "D"),
    ('$EXTRACT("1234Alabama567",5,11)', "Alabama"),
    ('$EXTRACT("1234Alabama567",*-9,*-3)', "Alabama"),
    # A position past the end, or 0 alone, is empty; a range clips to the string.
    ('$E("ABCD",5)', ""),
    ('$E("ABCD",0)', ""),
    ('$E("ABCD",0,2)', "AB"),
    ('$E("ABCD",3,99)', "CD"),
    ('$E("ABCD",3,2)', ""),
]

# $PIECE (RCOS_fpiece): a null delimiter or a null string gives "", a missing from the first
# piece, a from of 0 alone ""; with a to, a from below 1 counts from the first piece.
PIECE = [
    ('$P("a^b^c","")', ""),
    ('$P("","^",2)', ""),
    ('$P("a^b^c","^")', "a"),
    ('$P("a^b^c","^",0)', ""),
    ('$P("a^b^c","^",0,2)', "a^b"),
    ('$P("a^b^c","^",2,9)', "b^c"),
    ('$P("a^b^c","^",3,2)', ""),
    ('$P("a::b::c","::",*)', "c"),
]

# $LENGTH (RCOS_flength): pieces are delimiters plus one; "" has one piece, a null delimiter
# none.
LENGTH = [
    ('$L("ABCD")', 4),
    ('$L("")', 0),
    ('$L("a,b,c",",")', 3),
    ('$L("",",")', 1),
    ('$L("abc","")', 0),
]

# $FIND (RCOS_ffind).
FIND = [
    ('$FIND("ABCDEFG","BCD")', 5),
    ('$FIND("FOREST","FOR")', 4),
    ('$FIND("aardvark","z")', 0),
    ('$FIND("aardvark","")', 1),
    ('$FIND("aardvark","a")', 2),
    ('$FIND("","z")', 0),
    ('$FIND("","")', 1),
    ('$FIND("EVERGREEN FOREST","R",7)', 14),
    ('$FIND("EVERGREEN FOREST","R",20)', 0),
    ('$F("AAAAAA","AA")', 3),
]

# Tutorial "Conversion Functions" (TOS_Conversion): $TRANSLATE maps characters, $REPLACE strings.
CONVERSION = [
    ('$translate("abcde", "ad", "yz")', "ybcze"),
    ('$translate("abcde", "ad", "zz")', "zbcze"),
    ('$translate("abcde", "ad", "z")', "zbce"),
    ('$translate("abcdebcbc", "abc", "yz")', "yzdezz"),
    ('$replace("abcdebcbc", "abc", "yz")', "yzdebcbc"),
    ('$TR("a-b-c","-")', "abc"),
]

# $ZCONVERT (RCOS_fzconvert): W capitalises the first letter after a blank, a quote, an
# apostrophe or "(" and lowers the rest; S the first letter of the text and after . ? !.
# Output translation tables (GIOD "Translation Tables"): URL encodes the space and
# "#%&+,:;<=>?@[]^`{|}~ as %XX and characters above $CHAR(255) as %uXXXX; URI leaves ~ alone
# and writes characters above ASCII as UTF-8 bytes.
ZCONVERT = [
    ('$ZCONVERT("Hello world","U")', "HELLO WORLD"),
    ('$ZCVT("Hello World","l")', "hello world"),
    ('$ZCVT("the QUICK (brown) fox\'s ""tale""","W")', 'The Quick (Brown) Fox\'S "Tale"'),
    ('$ZCVT("ONE. two?  three! four","S")', "One. Two?  Three! Four"),
    ('$ZCVT("<b>&amp;</b>","O","HTML")', "&lt;b&gt;&amp;amp;&lt;/b&gt;"),
    ('$ZCVT("&lt;b&gt; &#65;&quot;","I","HTML")', '<b> A"'),
    ('$ZCVT("a<\'b\'>","O","XML")', "a&lt;&apos;b&apos;&gt;"),
    (
        '$ZCVT("a b""#%&+,:;<=>?@[]^`{|}~","O","URL")',
        "a%20b%22%23%25%26%2B%2C%3A%3B%3C%3D%3E%3F%40%5B%5D%5E%60%7B%7C%7D%7E",
    ),
    ('$ZCVT($C(256),"O","URL")', "%u0100"),
    ('$ZCVT("a%20b%u0100","I","URL")', "a b\u0100"),
    ('$ZCVT("~a b/é","O","URI")', "~a%20b%2F%C3%A9"),
    ('$ZCVT("a%20b%2F%C3%A9","I","URI")', "a b/é"),
    ('$ZCVT("it\'s ""x""","O","JS")', 'it\\\'s \\"x\\"'),
    ('$ZCVT("say ""hi""","O","JSON")', 'say \\"hi\\"'),
    ('$ZCVT("é","O","UTF8")', "Ã©"),
    ('$ZCVT("text","O")', "text"),
]

# $ZSTRIP (RCOS_fzstrip): = strips repeats of one character ("aaaaaabc" -> "abc", "abaca"
# unchanged); W is $CHAR(9), $CHAR(32), $CHAR(160); P includes the space; 'X spares a class;
# remchar adds characters to strip, keepchar spares them. The function set's Strip() examples
# "*N" and "<>W" are the same calls.
ZSTRIP = [
    ('$ZSTRIP("aaaaaabc","=","a")', "abc"),
    ('$ZSTRIP("abaca","=","a")', "abaca"),
    ('$ZSTRIP($C(9)_" "_$C(160)_"x"_$C(9),"<>W")', "x"),
    ('$ZSTRIP("  Hello   World  ","<=>W")', "Hello World"),
    ('$ZSTRIP("  Hello   World  ","*W")', "HelloWorld"),
    ('$ZSTRIP("  Hello   World  ","<W")', "Hello   World  "),
    ('$ZSTRIP("abc123","*N")', "abc"),
    ('$ZSTRIP("a, b! c.","*P")', "abc"),
    ('$ZSTRIP("Abc123","*A\'U")', "A123"),
    ('$ZSTRIP("abc-123","*N","-")', "abc"),
    ('$ZSTRIP("a1b2c3","*AN","","b")', "b"),
    ('$ZSTRIP("xxAxx","<>","x")', "A"),
    ('$ZSTRIP("ab"_$C(1)_"c","*C")', "abc"),
]

# $CASE (RCOS_fcase, tutorial TOS_Case): the value of the first exact match, else :default.
CASE = [
    ('$case(3, 1:"Rich", 2:"Kelly", 3:"Rudy", 4:"Sue", :"")', "Rudy"),
    ('$case(1, 1:"Rich", 2:"Kelly", 3:"Rudy", 4:"Sue", :"")', "Rich"),
    ('$case(7, 1:"Rich", 2:"Kelly", 3:"Rudy", 4:"Sue", :"")', ""),
    ('$CASE(3,1:"Monday",2:"Tuesday",3:"Wednesday",4:"Thursday",:"entry error")', "Wednesday"),
    ('$CASE(9,1:"Monday",2:"Tuesday",3:"Wednesday",4:"Thursday",:"entry error")', "entry error"),
    ('$CASE("F", "M":"Male", "F":"Female", :"Unknown")', "Female"),
    ('$CASE("X", "M":"Male", "F":"Female", :"Unknown")', "Unknown"),
    ('$CASE("01", 1:"one", :"other")', "other"),
]

# $SELECT (RCOS_fselect): the value of the first true expression, left to right.
SELECT = '$SELECT(x=1:"1st is True",x=2:"2nd is True",x=3:"3rd is True",1:"The Default")'

# $CHAR (RCOS_fchar), $ASCII (RCOS_fascii), $REVERSE (RCOS_freverse): a negative code is no
# character; $ASCII gives -1 past the string.
CHARACTERS = [
    ("$CHAR(72,101,108,108,111)", "Hello"),
    ("$C(65,-1,66)", "AB"),
    ('$ASCII("HELLO")', 72),
    ('$A("HELLO",5)', 79),
    ('$A("HELLO",6)', -1),
    ('$A("")', -1),
    ('$REVERSE("ABCDEFG")', "GFEDCBA"),
    ("$RE(-123)", "321-"),
]

# $JUSTIFY (RCOS_fjustify): two arguments pad text unchanged; with decimals the value becomes
# a canonical number rounded or zero-padded (a non-number is 0); a narrow width expands.
JUSTIFY = [
    ('$J("abc",5)', "  abc"),
    ("$J(12345,3)", "12345"),
    ("$J(.5,6,2)", "  0.50"),
    ("$J(2.345,6,2)", "  2.35"),
    ('$J("$12",6,2)', "  0.00"),
    ("$J(-3.14159,8,3)", "  -3.142"),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    STRING_TUTORIAL
    + EXTRACT
    + PIECE
    + LENGTH
    + FIND
    + CONVERSION
    + ZCONVERT
    + ZSTRIP
    + CASE
    + CHARACTERS
    + JUSTIFY,
)
def test_string_functions_follow_the_iris_reference(text: str, expected: object) -> None:
    assert ev(text) == expected


@pytest.mark.parametrize(
    ("x", "expected"), [(1, "1st is True"), (2, "2nd is True"), (9, "The Default")]
)
def test_select_returns_the_first_true_pair(x: int, expected: str) -> None:
    assert ev(SELECT, variables={"x": x}) == expected


def test_select_with_no_true_condition_is_the_iris_select_error() -> None:
    with pytest.raises(MessageError, match="<SELECT>"):
        ev('$S(0:"a",1=2:"b")')


def test_select_does_not_evaluate_pairs_after_the_first_true_one() -> None:
    # $SELECT "never evaluates later pairs": the unmapped call after the true pair never runs.
    assert ev('$S(1:"first",..Boom():"never")') == "first"


def test_case_without_a_match_or_default_is_an_illegal_value() -> None:
    with pytest.raises(ConfigError, match=r"\$CASE\('5'\).*<ILLEGAL VALUE>"):
        ev('$CASE(5, 1:"one")')


# $ZDATE dformat table (RCOS_fzdatetime_dformat): 1997-07-01 (day 57160) and 2018-02-22
# (day 64701), with the default year option (20th century years short in 1, 2, 4, 15).
ZDATE = [
    ("$ZDATE(57160,1)", "07/01/97"),
    ("$ZDATE(64701,1)", "02/22/2018"),
    ("$ZDATE(57160,2)", "01 Jul 97"),
    ("$ZDATE(64701,3)", "2018-02-22"),
    ("$ZDATE(57160,4)", "01/07/97"),
    ("$ZDATE(64701,4)", "22/02/2018"),
    ("$ZDATE(57160,5)", "Jul 1, 1997"),
    ("$ZDATE(57160,6)", "Jul 1 1997"),
    ("$ZDATE(57160,7)", "Jul 01 1997"),
    ("$ZDATE(57160,8)", "19970701"),
    ("$ZDATE(57160,9)", "July 1, 1997"),
    ("$ZDATE(57160,10)", "2"),
    ("$ZDATE(57160,11)", "Tue"),
    ("$ZDATE(57160,12)", "Tuesday"),
    ("$ZDATE(57160,13)", "1/7/2540"),
    ("$ZDATE(57160,14)", "182"),
    ("$ZDATE(57160,15)", "01/07/97"),
    ("$ZDATE(64701,15)", "22/02/2018"),
    ("$ZDATE(57160,16)", "1997\u5e747\u67081\u65e5"),
    ("$ZDATE(57160,17)", "1997\u5e74 7\u6708 1\u65e5"),
    # yearopt 4 writes every year with four digits, 2 with two; a monthlist renames months.
    ("$ZD(57160,1,,4)", "07/01/1997"),
    ("$ZD(64701,1,,2)", "02/22/18"),
    ('$ZD(57160,2," Jan Feb Mar Apr Mai Jun Jul Aug Sep Okt Nov Dez")', "01 Jul 97"),
    ('$ZD(64701,5,"/jan/feb/mar/apr/mai/jun/jul/aug/sep/okt/nov/dez")', "feb 22, 2018"),
    # $HOROLOG day numbers (TOS_Dates): 0 is 12/31/1840, 2980013 is 12/31/9999, 1/1/2018 is
    # 64649; day 1 is 1841-01-01 and day 67000 2024-06-09.
    ("$ZD(0,3)", "1840-12-31"),
    ("$ZD(1,3)", "1841-01-01"),
    ("$ZD(2980013,3)", "9999-12-31"),
    ("$ZD(64649,3)", "2018-01-01"),
    ("$ZD(67000,3)", "2024-06-09"),
    ('$ZD("67000,3600",8)', "20240609"),
    # Tutorial "Dates, continued" (TOS_Dates): $ZDATE($HOROLOG) on 1999-09-22.
    ("$zdate($horolog)", "09/22/99"),
    ("$zdate($horolog, 2)", "22 Sep 99"),
    ("$zdate($horolog, 3)", "1999-09-22"),
    ("$ZD(2980014,3,,,,,,,-1)", -1),
    ('$ZD("x",3,,,,,,,"bad")', "bad"),
    ("$ZD(64701,3,,,,,64702,,-1)", -1),
]

# $ZDATEH (TOS_Dates): dformat 5 reads many forms; "T+12" is twelve days after today; the ninth
# argument comes back for what is not a date.
ZDATEH = [
    ('$zdateh("9/21/1999", 5,,,,,,, -1)', 57972),
    ('$zdateh("21/9/1999", 5,,,,,,, -1)', -1),
    ('$zdateh("21 SEP", 5,,,,,,, -1)', 57972),
    ('$zdateh("SEP 21 1998", 5,,,,,,, -1)', 57607),
    ('$zdateh("2 29 2000", 5,,,,,,, -1)', 58133),
    ('$zdateh("2.29.1999", 5,,,,,,, -1)', -1),
    ('$zdateh("T+12", 5,,,,,,, -1)', 57985),
    ('$zdateh("MAT 3", 5,,,,,,, -1)', -1),
    # The inverse of each dformat above; format 8 reads YYYYMMDD.
    ('$ZDH("07/01/97")', 57160),
    ('$ZDH("02/22/2018",1)', 64701),
    ('$ZDH("01 Jul 97",2)', 57160),
    ('$ZDH("2018-02-22",3)', 64701),
    ('$ZDH("22/02/2018",4)', 64701),
    ('$ZDH("Jul 1, 1997",5)', 57160),
    ('$ZDH("July 1, 1997",9)', 57160),
    ('$ZDH("19970701",8)', 57160),
    ('$ZDH("1/7/2540",13)', 57160),
    ('$ZDH("22/02/2018",15)', 64701),
    ('$ZDH("1997\u5e747\u67081\u65e5",16)', 57160),
    ('$ZDH("2024-06-09",3)', 67000),
    ('$ZDH("T",8)', 57973),
    ('$ZDH("t-1",8)', 57972),
    ('$ZDH("2018-02-30",3,,,,,,,"bad")', "bad"),
]

# $ZTIME / $ZTIMEH tformats (RCOS_fztime, RCOS_fztimeh): 1 hh:mm:ss, 2 hh:mm, 3 and 4 the same
# on a 12-hour clock; $ZTIMEH("14:43:38") is 53018.
ZTIME = [
    ('$ZTIMEH("14:43:38")', 53018),
    ('$ZTIMEH("14:43:38",1)', 53018),
    ("$ZTIME(53018)", "14:43:38"),
    ("$ZT(53018,2)", "14:43"),
    ("$ZT(53018,3)", "02:43:38PM"),
    ("$ZT(53018,4)", "02:43PM"),
    ("$ZT(0,3)", "12:00:00AM"),
    ("$ZT(43200,4)", "12:00PM"),
    ("$ZT(204)", "00:03:24"),
    ("$ZT(3600.987,1,2)", "01:00:00.98"),
    ("$ZT(86400,1,,-1)", -1),
    ('$ZTH("02:43:38PM",3)', 53018),
    ('$ZTH("12:00AM",4)', 0),
    ('$ZTH("noon")', 43200),
    ('$ZTH("14:43:38.5")', 53018.5),
    ('$ZTH("25:00",1,"bad")', "bad"),
]

# $ZDATETIME / $ZDATETIMEH (RCOS_fzdatetime, RCOS_fzdatetimeh) on $HOROLOG and $ZTIMESTAMP
# values; the $ZTIMESTAMP page's 2018-02-22 15:17:27.984 UTC is "64701,55047.984".
ZDATETIME = [
    ('$ZDT("64701,55047.984",3)', "2018-02-22 15:17:27"),
    ('$ZDT("64701,55047.984",3,1,3)', "2018-02-22 15:17:27.984"),
    ('$ZDATETIME("67000,3600")', "06/09/2024 01:00:00"),
    ('$ZDT("67000,3600",3,2)', "2024-06-09 01:00"),
    ('$ZDT("67000,46800",8,4)', "20240609 01:00PM"),
    ("$ZDT(64701,3)", "2018-02-22 00:00:00"),
    ("$ZDT($H,3)", "1999-09-22 13:55:11"),
    ('$ZDTH("2018-02-22 15:17:27.984",3)', "64701,55047.984"),
    ('$ZDTH("2024-06-09 01:00:00",3)', "67000,3600"),
    ('$ZDTH("2024-06-09T01:00:00",3)', "67000,3600"),
    ('$ZDATETIMEH("06/09/2024 01:00PM",1,4)', "67000,46800"),
    ('$ZDTH("Jun 9, 2024 13:00",5)', "67000,46800"),
    ('$ZDTH("2024-06-09",3)', "67000,0"),
    ('$ZDTH("not a date",3,,,,,,,,"bad")', "bad"),
]


@pytest.mark.parametrize(("text", "expected"), ZDATE + ZDATEH + ZTIME + ZDATETIME)
def test_date_and_time_functions_follow_the_iris_reference(text: str, expected: object) -> None:
    assert ev(text) == expected


def test_horolog_is_local_days_and_seconds() -> None:
    # TOS_Dates: $HOROLOG was 57973,50111 when $ZDATE($HOROLOG) wrote 09/22/99.
    assert ev("$HOROLOG") == "57973,50111"
    assert ev("$H") == "57973,50111"
    assert ev('$P($H,",",2)') == "50111"


def test_ztimestamp_is_utc_with_milliseconds() -> None:
    # $ZTIMESTAMP (RCOS_vztimestamp): 2018-02-22 15:17:27.984 UTC is "64701,55047.984"; trailing
    # zeros of the fraction are suppressed.
    moment = datetime(2018, 2, 22, 15, 17, 27, 984000, tzinfo=UTC)
    context = Context(now=moment)
    assert compile_expression("$ZTIMESTAMP").evaluate(context) == "64701,55047.984"
    context = Context(now=moment.replace(microsecond=500000))
    assert compile_expression("$ZTS").evaluate(context) == "64701,55047.5"


def test_dates_without_erropt_raise_the_iris_illegal_value() -> None:
    with pytest.raises(MessageError, match=r"\$ZDATEH\('2\.29\.1999'\).*<ILLEGAL VALUE>"):
        ev('$ZDATEH("2.29.1999",5)')
    with pytest.raises(MessageError, match="<ILLEGAL VALUE>"):
        ev("$ZTIME(90000)")


# Tutorial "Lists" (TOS_Lists): a list built from an address, searched and concatenated.
MAIL = '$listbuild("One Memorial Drive", "Cambridge", "MA", "02142")'
OFFICE = '$listbuild("InterSystems", "USA") _ ' + MAIL
LISTS = [
    (f"$list({MAIL}, 2)", "Cambridge"),
    (f"$list({MAIL}, *-1)", "MA"),
    (f"$listlength({MAIL})", 4),
    (f'$listfind({MAIL}, "MA")', 3),
    (f"$listlength({OFFICE})", 6),
    (f'$listfind({OFFICE}, "MA")', 5),
    # $LISTLENGTH (RCOS_flistlength): an omitted element still counts; "" is the null list
    # with none; $LB() and $LB("") hold one empty element.
    ('$LISTLENGTH($LISTBUILD("Red","Blue","Green"))', 3),
    ('$LL($LB("Red",,"Green"))', 3),
    ('$LL("")', 0),
    ("$LL($LB())", 1),
    ('$LL($LB(""))', 1),
    # $LIST, $LISTGET, $LISTDATA, $LISTFIND: positions count from 1, -1 is the last element.
    ('$LI($LB("a","b","c"))', "a"),
    ('$LI($LB("a","b","c"),-1)', "c"),
    ('$LL($LI($LB("a","b","c","d"),2,3))', 2),
    ('$LI($LI($LB("a","b","c","d"),2,*),*)', "d"),
    ('$LG($LB("a",,"c"),2,"none")', "none"),
    ('$LG($LB("a",,"c"),3,"none")', "c"),
    ('$LG($LB("a"),5)', ""),
    ('$LD($LB("a",,"c"),2)', 0),
    ('$LD($LB("a",,"c"),3)', 1),
    ('$LF($LB("a","b","a"),"a",1)', 3),
    ('$LF($LB("a","b"),"z")', 0),
    # $LISTTOSTRING / $LISTFROMSTRING, and a list as text: its elements joined by commas.
    ('$LTS($LB("a","b","c"))', "a,b,c"),
    ('$LTS($LB("a","b"),"^")', "a^b"),
    ('$LL($LFS("a^b^c","^"))', 3),
    ('"list: "_$LB("a","b")', "list: a,b"),
    ('$L($LB("a","b")_"",",")', 2),
]


@pytest.mark.parametrize(("text", "expected"), LISTS)
def test_list_functions_follow_the_iris_reference(text: str, expected: object) -> None:
    assert ev(text) == expected


def test_list_functions_refuse_a_string_that_is_not_a_list() -> None:
    with pytest.raises(MessageError, match=r"\$LISTLENGTH: 'abc' is not a list \(IRIS <LIST>\)"):
        ev('$LL("abc")')


# $NUMBER (RCOS_fnumber): "I" accepts integers only (-07.00 is one, -07.01 is not); a rounding
# factor of -2 makes 234.45 into 200 and 1 makes 123.45 into 123.5; "." or "," names the
# decimal separator, the other one groups digits; out of range or invalid is "".
NUMBER = [
    ('$NUMBER(-07.00,"I")', -7),
    ('$NUMBER(+"-07.00","I")', -7),
    ('$NUMBER("-7","I")', -7),
    ('$NUMBER("-07.00","I")', -7),
    ('$NUMBER(-07.01,"I")', ""),
    ('$NUMBER("-07.01","I")', ""),
    ('$NUMBER(234.45,"-2")', 200),
    ('$NUMBER(123.45,"1")', 123.5),
    ('$NUM("1,234.5",".")', 1234.5),
    ('$NUM("1.234,5",",")', 1234.5),
    ('$NUM("12abc")', ""),
    ('$NUM(5,"",1,3)', ""),
    ('$NUM(2,"",1,3)', 2),
]

# $ISVALIDNUM (RCOS_fisvalidnum): digits, one leading sign, one point, an integer exponent;
# scale 0 rounds (3.9 is 4) and -1 truncates (3.9 is 3) before the range check.
ISVALIDNUM = [
    ("$ISVALIDNUM(65.5)", 1),
    ('$ISVALIDNUM("-65.5")', 1),
    ('$ISVALIDNUM("+65.5")', 1),
    ('$ISVALIDNUM("6.5E3")', 1),
    ('$ISVALIDNUM("")', 0),
    ('$ISVALIDNUM("1.2.3")', 0),
    ('$ISVALIDNUM("65+")', 0),
    ('$ISVALIDNUM("4,000")', 0),
    ('$ISVALIDNUM("7E3.5")', 0),
    ("$ISVALIDNUM(3.9,0,0,3)", 0),
    ("$ISVALIDNUM(3.9,-1,0,3)", 1),
    ("$ISVALIDNUM(3.9,,0,3)", 0),
]

# $NORMALIZE (RCOS_fnormalize): rounds to scale places and drops trailing zeros ($ZPI with 11
# and 12 places writes the same digits); 0 rounds to an integer, -1 truncates.
NORMALIZE = [
    ("$NORMALIZE($ZPI,11)", 3.14159265359),
    ("$NORMALIZE($ZPI,12)", 3.14159265359),
    ("$NORMALIZE($ZPI,13)", 3.1415926535898),
    ("$NORMALIZE($ZPI,14)", 3.14159265358979),
    ("$NORMALIZE(3.9,0)", 4),
    ("$NORMALIZE(3.9,-1)", 3),
    ('$NORMALIZE("4.56abc",1)', 4.6),
    # $ZABS and $ZSQR (RCOS_fzabs, RCOS_fzsqr); $RANDOM(1) can only be 0 (RCOS_frandom).
    ("$ZABS(-5.5)", 5.5),
    ("$ZSQR(16)", 4),
    ("$ZSQR(2)", 2**0.5),
    ("$RANDOM(1)", 0),
]


@pytest.mark.parametrize(("text", "expected"), NUMBER + ISVALIDNUM + NORMALIZE)
def test_number_functions_follow_the_iris_reference(text: str, expected: object) -> None:
    assert ev(text) == expected


def test_get_and_data_read_local_variables() -> None:
    # $GET (RCOS_fget) and $DATA (RCOS_fdata): an undefined variable reads "" or the default,
    # $DATA is 1 for a defined variable (even holding "") and 0 for an undefined one.
    check(
        [
            ("$GET(tValue)", "abc"),
            ('$G(tValue,"default")', "abc"),
            ("$GET(tMissing)", ""),
            ('$G(tMissing,"default")', "default"),
            ('$G(%x,"d")', ""),
            ("$DATA(tValue)", 1),
            ("$D(tEmpty)", 1),
            ("$D(tMissing)", 0),
            ("'$D(tMissing)", True),
            ("$D(k1)", 1),
        ],
        variables={"tValue": "abc", "tEmpty": "", "%x": "", "k1": 2},
    )


@pytest.mark.parametrize(
    ("bad", "problem", "column"),
    [
        ("1 + $FOO(1)", r"unknown function \$FOO\(\)", 5),
        ("$E()", r"\$EXTRACT\(\) takes 1 to 3 arguments, not 0", 1),
        ('"x" _ $ZSTRIP("a")', r"\$ZSTRIP\(\) takes 2 to 4", 7),
        ("$CASE(1,2)", r"\$CASE\(\) argument 2 must be case:value", 1),
        ('$CASE(1,:"a",2:"b")', r"\$CASE\(\) takes its :default last", 1),
        ('$S("x")', r"\$SELECT\(\) argument 1 must be condition:value", 1),
        ('$P("a",1:2)', r"\$PIECE\(\) takes no case:value pairs", 1),
        ("$NOPE", r"unknown special variable \$NOPE", 1),
        ("$H(1)", r"unknown function \$H\(\)", 1),
    ],
)
def test_bad_dollar_calls_fail_to_compile_naming_function_and_column(
    bad: str, problem: str, column: int
) -> None:
    with pytest.raises(ConfigError, match=f"{problem}.* at column {column}"):
        compile_expression(bad)


def test_names_and_abbreviations_are_case_insensitive() -> None:
    for text in (
        '$PIECE("a^b","^",2)',
        '$piece("a^b","^",2)',
        '$P("a^b","^",2)',
        '$p("a^b","^",2)',
    ):
        assert ev(text) == "b"


# $ISOBJECT (RCOS_fisobject): 1 for an object reference, 0 for any other value. In HIE a
# message, a model, a dict (dynamic object) or a list (collection) is an object.
def test_isobject_tells_objects_from_values() -> None:
    variables = {"obj": {"a": 1}, "items": [1], "text": "abc", "number": 12, "lb": ("a",)}
    cases = [
        ("$ISOBJECT(obj)", 1),
        ("$IsObject(items)", 1),
        ("$ISOBJECT(text)", 0),
        ("$ISOBJECT(number)", 0),
        ("$ISOBJECT(lb)", 0),  # an IRIS list is a string in IRIS
        ("$ISOBJECT(undefined)", 0),
        ('$ISOBJECT("")', 0),
    ]
    check(cases, variables=variables)
    assert ev("$ISOBJECT(Document.Info)", source={"Info": {"x": 1}}) == 1


# $INCREMENT (RCOS_fincrement): adds 1 (or num) to a local variable, an undefined one counting
# from 0, and returns the new value; the variable keeps it.
def test_increment_adds_to_a_local_variable_and_returns_it() -> None:
    variables: dict[str, object] = {"count": "7 apples"}
    ctx = Context(now=NOW, variables=variables)
    assert [compile_expression("$I(n)").evaluate(ctx) for _ in range(3)] == [1, 2, 3]
    assert compile_expression("$INCREMENT(n,2.5)").evaluate(ctx) == 5.5
    assert compile_expression("$increment(count,-2)").evaluate(ctx) == 5
    assert variables == {"count": 5, "n": 5.5}
    with pytest.raises(ConfigError, match=r"\$INCREMENT\(\) adds to a local variable"):
        compile_expression("$I(source.{PID:1})")
