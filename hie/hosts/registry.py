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
    "HL7TCPService": "hie.hosts.hl7_tcp:HL7TCPService",
    "HL7TCPOperation": "hie.hosts.hl7_tcp:HL7TCPOperation",
    "HL7HTTPService": "hie.hosts.http_service:HL7HTTPService",
    "HL7HTTPOperation": "hie.hosts.http_operation:HL7HTTPOperation",
    "HTTPService": "hie.hosts.http_service:HTTPService",
    "HTTPOperation": "hie.hosts.http_operation:HTTPOperation",
    "HL7FileService": "hie.hosts.hl7_file:HL7FileService",
    "HL7FileOperation": "hie.hosts.hl7_file:HL7FileOperation",
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
        builtin = _moved_builtin(name)
        if builtin is not None:
            return builtin
        known = ", ".join(sorted(BUILTIN_HOSTS))
        raise ConfigError(
            f"unknown host class {name!r} ({exc}); built-in hosts are: {known}"
        ) from exc
    if not (isinstance(obj, type) and issubclass(obj, Host)):
        raise ConfigError(f"{name!r} is not a Host subclass")
    return obj


def _moved_builtin(path: str) -> type[Host] | None:
    """A built-in host named by a module path it no longer lives at (``hie.hosts.hl7.X``).

    Production files may name a built-in by any dotted path under ``hie.hosts``; which module
    holds it is HIE's business, so such a path keeps working when the host moves.
    """
    module, _, attr = path.replace(":", ".").rpartition(".")
    if not module.startswith("hie.hosts") or attr not in BUILTIN_HOSTS:
        return None
    return resolve_host_class(attr)
