"""Hosts are named by built-in name or dotted path; moving a host's module keeps both working."""

from __future__ import annotations

import pytest

from hie.errors import ConfigError
from hie.hosts.hl7_file import HL7FileService
from hie.hosts.hl7_tcp import HL7TCPOperation, HL7TCPService
from hie.hosts.registry import resolve_host_class


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("HL7TCPService", HL7TCPService),
        ("hie.hosts.HL7TCPService", HL7TCPService),
        ("hie.hosts:HL7TCPOperation", HL7TCPOperation),
        ("hie.hosts.hl7_tcp.HL7TCPOperation", HL7TCPOperation),
        # Module paths of earlier releases, which production files may still carry.
        ("hie.hosts.hl7_service.HL7TCPService", HL7TCPService),
        ("hie.hosts.hl7:HL7FileService", HL7FileService),
    ],
)
def test_built_in_host_resolves_by_name_and_by_any_hie_hosts_path(
    path: str, expected: type
) -> None:
    assert resolve_host_class(path) is expected


def test_unknown_class_under_hie_hosts_is_still_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown host class 'hie\.hosts\.hl7\.NoSuchHost'"):
        resolve_host_class("hie.hosts.hl7.NoSuchHost")


def test_built_in_hosts_import_from_hie_hosts() -> None:
    from hie.hosts import HL7TCPService as imported

    assert imported is HL7TCPService
