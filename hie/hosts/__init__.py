"""Hosts: business services, processes and operations, and the built-in ones.

Every built-in host is also ``hie.hosts.<Name>`` (``class: hie.hosts.HL7TCPService`` in a
production, or ``from hie.hosts import HL7TCPOperation``), whichever module holds it; its module is
imported on first use, so importing ``hie.hosts`` stays cheap.
"""

from __future__ import annotations

from hie.dotted_path import import_object
from hie.hosts.registry import BUILTIN_HOSTS


def __getattr__(name: str) -> object:
    if name in BUILTIN_HOSTS:
        return import_object(BUILTIN_HOSTS[name])
    raise AttributeError(f"module 'hie.hosts' has no attribute {name!r}")
