"""File hosts: a service that picks up files, an operation that writes them."""

from __future__ import annotations

from typing import Any, ClassVar

from hie.adapters.file import FileInboundAdapter, FileOutboundAdapter
from hie.hosts.base import ItemSettings
from hie.hosts.operation import BusinessOperation
from hie.hosts.service import BusinessService


class FileServiceSettings(ItemSettings):
    """Where and how a file service polls (IRIS FilePath, FileSpec, ArchivePath)."""

    file_path: str
    file_spec: str = "*"
    archive_path: str | None = None
    poll_interval: float = 1.0
    charset: str = "utf-8"


class FileService(BusinessService):
    """Picks up each file in ``file_path`` and sends its text to every target."""

    Settings: ClassVar[type[ItemSettings]] = FileServiceSettings
    adapter_class = FileInboundAdapter


class FileOperationSettings(ItemSettings):
    """Where and how a file operation writes (IRIS FilePath, Filename)."""

    file_path: str
    filename: str = "{timestamp}_{message_id}.txt"
    charset: str = "utf-8"


class FileOperation(BusinessOperation):
    """Writes each message to a file of its own in ``file_path``."""

    Settings: ClassVar[type[ItemSettings]] = FileOperationSettings
    adapter_class = FileOutboundAdapter

    def on_message(self, request: Any) -> Any:
        """Write the message; the reply is the file's path."""
        assert isinstance(self.adapter, FileOutboundAdapter)
        return str(self.adapter.send(request))
