"""HL7 files: ``HL7FileService`` picks them up, ``HL7FileOperation`` writes them.

``HL7FileService`` picks up files of one or many messages (FHS/BHS batches too) and sends each
message on its own; ``HL7FileOperation`` writes each message to a file of its own, atomically.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any, ClassVar

from hie.adapters.file import FileInboundAdapter, FileOutboundAdapter
from hie.errors import HL7ParseError
from hie.hl7 import HL7Message, python_codec, sniff_charset, split_batch
from hie.hosts.base import ItemSettings
from hie.hosts.file import FileOperationSettings, FileServiceSettings
from hie.hosts.operation import BusinessOperation
from hie.hosts.service import BusinessService
from hie.messages import BODY_TEXT, Envelope

log = logging.getLogger(__name__)


class HL7FileOperationSettings(FileOperationSettings):
    """Where and how an HL7 file operation writes; ``charset`` None = the message's MSH-18."""

    filename: str = "{timestamp}_{control_id}.hl7"
    charset: str | None = None  # type: ignore[assignment]


class HL7FileOperation(BusinessOperation):
    """Writes each HL7 message to its own file in ``file_path``, atomically (temp + rename).

    ``filename`` takes ``{control_id}``, ``{type}`` (``ADT_A01``), ``{message_id}``,
    ``{timestamp}``, ``{session_id}``, ``{source}`` and ``{item}``. The reply is the file's path.
    """

    Settings: ClassVar[type[ItemSettings]] = HL7FileOperationSettings
    settings: HL7FileOperationSettings
    adapter_class = FileOutboundAdapter
    _charset_lock = threading.Lock()

    def on_message(self, request: Any) -> Any:
        """Write ``request`` in its own charset (or ``charset``); return the path written."""
        msg = request if isinstance(request, HL7Message) else HL7Message(str(request))
        assert isinstance(self.adapter, FileOutboundAdapter)
        fields = {"control_id": _safe(msg.control_id), "type": _safe(msg.message_type)}
        # The adapter encodes with its one charset, but ours is per message; the lock keeps the
        # threads of a threads pool from writing with each other's charset.
        with self._charset_lock:
            self.adapter.charset = self.settings.charset or msg.codec
            return str(self.adapter.send(msg.to_er7(), **fields))


def _safe(value: str) -> str:
    """A message field made safe for a file name (``ADT^A01`` -> ``ADT_A01``)."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", value).strip("._") or "none"


# -- HL7FileService -------------------------------------------------------------------------------


class HL7FileServiceSettings(FileServiceSettings):
    """Where an HL7 file service polls; bad files go to ``error_path`` (default ``.error``)."""

    error_path: str | None = None


class _HL7FileAdapter(FileInboundAdapter):
    """Reads files as bytes (the service decodes per MSH-18) and moves bad files aside."""

    def take(self, path: Path) -> None:
        """Hand one file to the service; a file with any unreadable message goes to errors."""
        service = self.service
        assert isinstance(service, HL7FileService)
        try:
            clean = service.process_file(path.name, path.read_bytes())
        except Exception:
            log.exception("file %s could not be processed; moved to the error folder", path)
            clean = False
        if clean:
            if self.archive is not None:
                self._move(path, self.archive)
            else:
                path.unlink(missing_ok=True)
        else:
            error_path = service.settings.error_path
            self._move(path, Path(error_path) if error_path else self.folder / ".error")
        self._seen.pop(path, None)


class HL7FileService(BusinessService):
    """Picks up HL7 files, splits them (FHS/BHS batches, several MSH) and sends each message.

    Each message goes to the targets as an envelope of its own. A message that cannot be read is
    stored with status ``error`` and its reason, and its file is moved to the error folder once
    the readable ones were sent: nothing is dropped silently.
    """

    Settings: ClassVar[type[ItemSettings]] = HL7FileServiceSettings
    settings: HL7FileServiceSettings
    adapter_class = _HL7FileAdapter

    def process_file(self, name: str, data: bytes) -> bool:
        """Send every message of one file; False when some part of it could not be read."""
        text = self._decode(data)
        clean = True
        for chunk in _message_chunks(text):
            if not chunk.startswith("MSH"):
                self._store_unreadable(name, chunk, "a line outside any message (no MSH before it)")
                clean = False
                continue
            try:
                messages = split_batch(chunk)
            except HL7ParseError as exc:
                self._store_unreadable(name, chunk, str(exc))
                clean = False
                continue
            for msg in messages:
                self.process_input(msg)
        return clean

    def _decode(self, data: bytes) -> str:
        """The file's text: in the charset its first MSH-18 names, else ``charset``."""
        data = data.removeprefix(b"\xef\xbb\xbf")
        codec = python_codec(sniff_charset(data), default=self.settings.charset)
        return data.decode(codec)

    def _store_unreadable(self, name: str, text: str, reason: str) -> None:
        log.error("%s: a message in file %s cannot be read: %s", self.item_name, name, reason)
        store = self.store
        if store is None:
            return
        envelope = Envelope(body_type=BODY_TEXT, body=text, source=self.item_name)
        store.save(envelope, status="error", event=None, item=self.item_name)
        store.set_status(
            envelope.message_id,
            "error",
            item=self.item_name,
            event="parse_error",
            error=f"file {name}: {reason}",
        )


def _message_chunks(text: str) -> list[str]:
    """The text of each message in a file, unparsed: one chunk per MSH, envelopes dropped.

    ``split_batch`` is all-or-nothing; chunks let one bad message be kept aside while the others
    of the same file go on.
    """
    chunks: list[str] = []
    current: list[str] = []
    for line in re.split(r"\r\n|\n|\r", text):
        name = line[:3]
        if name == "MSH" or name in ("FHS", "BHS", "BTS", "FTS"):
            if current:
                chunks.append("\r".join(current))
            current = [line] if name == "MSH" else []
        elif current:
            current.append(line)
        elif line.strip():
            # A line before any MSH: its own chunk, so split_batch reports or skips it as usual.
            chunks.append(line)
    if current:
        chunks.append("\r".join(current))
    return chunks
