"""HTTP hosts without sockets: settings, what IRIS items become, bodies and Retry-After."""

from __future__ import annotations

import email.utils
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from hie.adapters.http import HTTPReply
from hie.hl7 import HL7Message
from hie.hosts.http_operation import (
    HL7HTTPOperationSettings,
    HTTPClientSettings,
    encode_request_body,
)
from hie.hosts.http_service import HL7HTTPServiceSettings, HTTPServiceSettings
from hie.iris.production import read_iris_production

IRIS_HTTP = """\
<Production Name="Lab.HTTP">
  <Item Name="Lab In" ClassName="EnsLib.HL7.Service.HTTPService" PoolSize="1" Enabled="true">
    <Setting Target="Adapter" Name="Port">8080</Setting>
    <Setting Target="Host" Name="TargetConfigNames">Lab Out,Orders Out</Setting>
  </Item>
  <Item Name="Lab Out" ClassName="EnsLib.HL7.Operation.HTTPOperation" PoolSize="1" Enabled="true">
    <Setting Target="Adapter" Name="HTTPServer">lab.example.test</Setting>
    <Setting Target="Adapter" Name="HTTPPort">8443</Setting>
    <Setting Target="Adapter" Name="URL">/hl7/in</Setting>
    <Setting Target="Adapter" Name="ResponseTimeout">12</Setting>
    <Setting Target="Host" Name="ReplyCodeActions">:?R=F,:?E=S,:*=S</Setting>
  </Item>
  <Item Name="Orders Out" ClassName="EnsLib.HTTP.GenericOperation" PoolSize="2" Enabled="true">
    <Setting Target="Adapter" Name="HTTPServer">orders.example.test</Setting>
    <Setting Target="Adapter" Name="URL">orders</Setting>
  </Item>
</Production>
"""


def test_iris_http_items_become_the_http_hosts(tmp_path: Path) -> None:
    path = tmp_path / "lab.xml"
    path.write_text(IRIS_HTTP)
    result = read_iris_production(path)
    items = {i.name: i for i in result.production.items}
    assert {n: i.class_name for n, i in items.items()} == {
        "Lab_In": "HL7HTTPService",
        "Lab_Out": "HL7HTTPOperation",
        "Orders_Out": "HTTPOperation",
    }
    assert items["Lab_In"].settings["port"] == 8080
    assert items["Lab_In"].targets == ["Lab_Out", "Orders_Out"]
    lab = HL7HTTPOperationSettings.model_validate(items["Lab_Out"].settings)
    assert lab.url == "http://lab.example.test:8443/hl7/in"
    assert lab.timeout == 12
    assert lab.reply_code_actions == ":?R=F,:?E=S,:*=S"
    orders = HTTPClientSettings.model_validate(items["Orders_Out"].settings)
    assert orders.url == "http://orders.example.test/orders"
    assert all(not r.unmapped_settings for r in result.items)


def test_client_settings_need_an_http_url_and_a_known_method() -> None:
    with pytest.raises(ValidationError, match="give url"):
        HTTPClientSettings.model_validate({})
    with pytest.raises(ValidationError, match="not an http"):
        HTTPClientSettings.model_validate({"url": "ftp://x.test/in"})
    with pytest.raises(ValidationError, match="method 'brew'"):
        HTTPClientSettings.model_validate({"url": "http://x.test/", "method": "brew"})
    settings = HTTPClientSettings.model_validate({"url": "https://x.test/in", "method": "put"})
    assert settings.method == "PUT"
    assert settings.ssl_context() is not None
    assert HTTPClientSettings.model_validate({"url": "http://x.test/"}).ssl_context() is None


def test_service_paths_start_with_a_slash_and_reject_status_is_a_status() -> None:
    assert HL7HTTPServiceSettings.model_validate({"port": 1, "path": "hl7"}).path == "/hl7"
    assert HTTPServiceSettings.model_validate({"port": 1, "path": "in"}).path == "/in"
    with pytest.raises(ValidationError):
        HL7HTTPServiceSettings.model_validate({"port": 1, "reject_status": 99})


class Order(BaseModel):
    order: str
    count: int


@pytest.mark.parametrize(
    ("body", "data", "content_type"),
    [
        ("plain text", b"plain text", "text/plain; charset=utf-8"),
        ({"a": 1}, b'{"a": 1}', "application/json"),
        (Order(order="O1", count=2), b'{"order":"O1","count":2}', "application/json"),
        (None, None, "text/plain; charset=utf-8"),
    ],
)
def test_request_bodies(body: object, data: bytes | None, content_type: str) -> None:
    assert encode_request_body(body) == (data, content_type)


def test_an_hl7_body_goes_as_its_own_bytes() -> None:
    text = "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5||||||8859/1\rPID|1||1||MÜLLER^J\r"
    msg = HL7Message(text.encode("latin-1"))
    data, content_type = encode_request_body(msg)
    assert data == text.encode("latin-1")
    assert content_type == "x-application/hl7-v2+er7; charset=iso8859-1"


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert HTTPReply(429, headers={"retry-after": "7"}).retry_after() == 7.0
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert HTTPReply(503, headers={"retry-after": date}).retry_after(now=now) == 30.0
    assert HTTPReply(503, headers={"retry-after": "soon"}).retry_after() is None
    assert HTTPReply(503).retry_after() is None


def test_reply_text_uses_its_charset() -> None:
    reply = HTTPReply(
        200, "Müller".encode("latin-1"), {"content-type": "text/plain; charset=latin-1"}
    )
    assert reply.text() == "Müller"
    assert reply.ok and not HTTPReply(302).ok
