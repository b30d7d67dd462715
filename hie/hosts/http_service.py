"""HTTP in: ``HL7HTTPService`` (IRIS ``EnsLib.HL7.Service.HTTPService``) and ``HTTPService``
(JSON or text, IRIS ``EnsLib.HTTP.GenericService``).

Their listeners run in the gateway process beside the MLLP ones (``mllp_gateway.http``), with the
same limits, TLS, allowed clients and backpressure. A message is stored before it is answered:

- ``HL7HTTPService``: ``POST`` the message as the body (``x-application/hl7-v2+er7`` or
  ``text/plain``); the answer is ``200`` with the ACK as its body, per ``ack_mode`` exactly as
  over MLLP. A body that is not HL7 is stored as an error and answered ``reject_status`` (400)
  with the AR. A full target queue answers ``503`` with the AE and a ``Retry-After``.
- ``HTTPService``: ``POST`` any body; stored as text (or, with ``body_class``, validated into that
  pydantic model: a body that does not validate gets ``400`` and is stored as an error) and
  answered ``202`` with ``{"message_id": ...}``.

Both answer ``404`` for another path, ``405`` for another method and ``413`` for a body over
``max_message_size``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, Field, field_validator

from hie.dotted_path import import_object
from hie.errors import ConfigError
from hie.hosts.base import ItemSettings
from hie.hosts.hl7_tcp import HL7TCPService, HL7TCPServiceSettings
from hie.hosts.listener import ListenerSettings
from hie.hosts.service import BusinessService


def _path(value: str) -> str:
    return value if value.startswith("/") else f"/{value}"


class HL7HTTPServiceSettings(HL7TCPServiceSettings):
    """The MLLP service's settings plus the URL path and the status for what is not HL7."""

    #: The path messages are POSTed to.
    path: str = "/"
    #: HTTP status for a body that is not HL7 (the AR is in the body either way); IRIS answers
    #: 200, which some senders need.
    reject_status: int = Field(default=400, ge=200, le=599)

    @field_validator("path")
    @classmethod
    def _slash(cls, value: str) -> str:
        return _path(value)


class HL7HTTPService(HL7TCPService):
    """Receives HL7 v2 POSTed over HTTP; each message goes to every target.

    ``on_message`` and hooks work as for ``HL7TCPService``.
    """

    Settings: ClassVar[type[ItemSettings]] = HL7HTTPServiceSettings


class HTTPServiceSettings(ListenerSettings):
    """Listener settings plus the path and what the body becomes."""

    #: The path messages are POSTed to.
    path: str = "/"
    #: Dotted path of a pydantic model (``mypkg.messages:LabResult``) the JSON body must
    #: validate into; empty: the body travels as text.
    body_class: str | None = None
    #: Charset of a body whose Content-Type names none.
    default_charset: str = "utf-8"

    @field_validator("path")
    @classmethod
    def _slash(cls, value: str) -> str:
        return _path(value)


class HTTPService(BusinessService):
    """Receives any body POSTed over HTTP and sends it to every target; answers 202 with the
    message id once stored.

    ``on_message(data)`` (data: the text, or the ``body_class`` model) returns what to send on,
    as for ``HL7TCPService``; raise ``SkipMessage`` to keep it from every target.
    """

    Settings: ClassVar[type[ItemSettings]] = HTTPServiceSettings

    body_model: type[BaseModel] | None = None

    def on_init(self) -> None:
        """Import ``body_class`` now, so a wrong path stops the gateway at start, named."""
        settings: HTTPServiceSettings = self.settings  # type: ignore[assignment]
        if settings.body_class:
            try:
                model = import_object(settings.body_class)
            except (ImportError, AttributeError) as exc:
                raise ConfigError(f"body_class {settings.body_class!r}: {exc}") from exc
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise ConfigError(f"body_class {settings.body_class!r} is not a pydantic model")
            self.body_model = model

    def on_message(self, data: Any) -> Any:
        """What the gateway sends on for each body received; by default the body itself."""
        return data
