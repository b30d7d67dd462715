"""HIE: an open healthcare integration engine. HL7 v2 over MLLP, productions of business services,
processes and operations, each process and operation a Celery task on its own queue."""

from __future__ import annotations

from hie.errors import (
    AdapterError,
    ConfigError,
    DeliveryError,
    Fail,
    HIEError,
    HL7ParseError,
    MessageError,
    MLLPFramingError,
    ProductionError,
    RequestError,
    RequestTimeoutError,
    Retry,
    SelfRequestError,
    SkipMessage,
    StoreError,
    Suspend,
)
from hie.hl7 import HL7Message
from hie.hooks import HookChain, MessageHook
from hie.hosts.base import Host, ItemSettings
from hie.hosts.operation import BusinessOperation
from hie.hosts.process import BusinessProcess, ErrorResponse
from hie.hosts.service import BusinessService
from hie.messages import Envelope, Message
from hie.production import Item, Production
from hie.settings import Settings, get_settings
from hie.store import MessageStore, Status

__version__ = "0.1.0"

__all__ = [
    "AdapterError",
    "BusinessOperation",
    "BusinessProcess",
    "BusinessService",
    "ConfigError",
    "DeliveryError",
    "Envelope",
    "ErrorResponse",
    "Fail",
    "HIEError",
    "HL7Message",
    "HL7ParseError",
    "HookChain",
    "Host",
    "Item",
    "ItemSettings",
    "MLLPFramingError",
    "Message",
    "MessageError",
    "MessageHook",
    "MessageStore",
    "Production",
    "ProductionError",
    "RequestError",
    "RequestTimeoutError",
    "Retry",
    "SelfRequestError",
    "Settings",
    "SkipMessage",
    "Status",
    "StoreError",
    "Suspend",
    "get_settings",
]
