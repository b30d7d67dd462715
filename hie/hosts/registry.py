"""Built-in host names (and IRIS class names) -> host classes; dotted paths for user classes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hie.dotted_path import import_object
from hie.errors import ConfigError

if TYPE_CHECKING:
    from hie.hosts.base import Host

#: Names usable in a production's ``class:``; values are import paths, loaded on first use.
BUILTIN_HOSTS: dict[str, str] = {
    "RoutingEngine": "hie.hosts.router:RoutingEngine",
    "HL7RoutingEngine": "hie.hosts.router:HL7RoutingEngine",
    "FileService": "hie.hosts.file:FileService",
    "FileOperation": "hie.hosts.file:FileOperation",
    "HL7TCPService": "hie.hosts.hl7_service:HL7TCPService",
    "HL7TCPOperation": "hie.hosts.hl7:HL7TCPOperation",
    "HL7FileService": "hie.hosts.hl7:HL7FileService",
    "HL7FileOperation": "hie.hosts.hl7:HL7FileOperation",
    "EmailAlertOperation": "hie.hosts.alert:EmailAlertOperation",
}


def register_host(name: str, path: str) -> None:
    """Make ``name`` usable as a production ``class:`` for the class at ``path``."""
    BUILTIN_HOSTS[name] = path


def resolve_host_class(name: str) -> type[Host]:
    """The host class for a built-in name or a dotted path; ``ConfigError`` if there is none."""
    from hie.hosts.base import Host

    path = BUILTIN_HOSTS.get(name, name)
    try:
        obj = import_object(path)
    except (ImportError, AttributeError, ValueError) as exc:
        known = ", ".join(sorted(BUILTIN_HOSTS))
        raise ConfigError(
            f"unknown host class {name!r} ({exc}); built-in hosts are: {known}"
        ) from exc
    if not (isinstance(obj, type) and issubclass(obj, Host)):
        raise ConfigError(f"{name!r} is not a Host subclass")
    return obj
