"""Safe XML: DTDs and entities are refused before anything is expanded."""

from __future__ import annotations

import pytest

from hie.iris.safe_xml import parse_xml
from hie.errors import ConfigError

BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<lolz>&lol9;</lolz>"""

XXE = """<?xml version="1.0"?>
<!DOCTYPE foo [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<ruleDefinition>&xxe;</ruleDefinition>"""


@pytest.mark.parametrize("doc", [BOMB, XXE, BOMB.encode(), XXE.encode()])
def test_documents_with_entities_are_refused(doc: str | bytes) -> None:
    with pytest.raises(ConfigError, match=r"DTD or entities is refused: bomb.xml:2"):
        parse_xml(doc, source="bomb.xml")


def test_refusal_names_the_line_of_the_class_file() -> None:
    with pytest.raises(ConfigError, match=r"rule.cls:11"):
        parse_xml(XXE, source="rule.cls", first_line=10)


def test_plain_xml_parses_and_bad_xml_names_the_line() -> None:
    assert parse_xml('<a x="1"><b/></a>', source="ok.xml").get("x") == "1"
    with pytest.raises(ConfigError, match=r"bad.xml:2: XML is not well-formed"):
        parse_xml("<a>\n<b></a>", source="bad.xml")
