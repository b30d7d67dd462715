"""File drop in and out: poll a folder for new files; write files atomically.

Inbound, a file is handed over only once it has stopped growing (its size and mtime were the same
on two polls), and is archived or deleted only after the service accepted it, so a crash in
between re-reads it rather than losing it. Outbound, a file is written under a temporary name and
renamed into place, so a reader never sees half a message.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from hie.adapters.base import InboundAdapter, OutboundAdapter
from hie.errors import AdapterError

if TYPE_CHECKING:
    from hie.hosts.base import Host

log = logging.getLogger(__name__)


class FileInboundAdapter(InboundAdapter):
    """Polls ``file_path`` for files matching ``file_spec`` (the service's settings)."""

    def __init__(self, service: Any) -> None:
        super().__init__(service)
        s = service.settings
        self.folder = Path(s.file_path)
        self.spec: str = s.file_spec
        self.archive = Path(s.archive_path) if s.archive_path else None
        self.poll_interval: float = s.poll_interval
        self.charset: str = s.charset
        self._seen: dict[Path, tuple[int, float]] = {}

    def ready_files(self) -> list[Path]:
        """Files that stopped growing since the last poll, oldest first."""
        if not self.folder.is_dir():
            return []
        current: dict[Path, tuple[int, float]] = {}
        for path in self.folder.glob(self.spec):
            if path.is_file() and not path.name.startswith("."):
                stat = path.stat()
                current[path] = (stat.st_size, stat.st_mtime)
        ready = [p for p, sig in current.items() if self._seen.get(p) == sig]
        self._seen = current
        return sorted(ready, key=lambda p: (current[p][1], p.name))

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set."""
        self.folder.mkdir(parents=True, exist_ok=True)
        while not stop.is_set():
            for path in self.ready_files():
                if stop.is_set():
                    break
                self.take(path)
            stop.wait(self.poll_interval)

    def take(self, path: Path) -> None:
        """Hand one file to the service, then archive or delete it."""
        try:
            text = path.read_bytes().decode(self.charset)
            self.service.process_input(text)
        except Exception:
            log.exception("file %s could not be processed; moved aside", path)
            self._move(path, self.folder / ".error")
            return
        if self.archive is not None:
            self._move(path, self.archive)
        else:
            path.unlink(missing_ok=True)
        self._seen.pop(path, None)

    @staticmethod
    def _move(path: Path, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        shutil.move(str(path), folder / f"{path.name}.{stamp}")


def render_filename(pattern: str, host: Host, fields: dict[str, str]) -> str:
    """Fill ``pattern``'s ``{message_id}``, ``{control_id}``, ``{type}``, ``{timestamp}`` ..."""
    envelope = host.current
    values = {
        "message_id": str(envelope.message_id) if envelope else "none",
        "session_id": str(envelope.session_id) if envelope else "none",
        "source": (envelope.source if envelope else None) or "none",
        "item": host.item_name,
        "timestamp": datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f"),
        "control_id": "",
        "type": "",
        **fields,
    }
    # Date codes (%Y%m%d ...) first, from the clock; then HIE's {fields}.
    name = datetime.now().strftime(pattern).format(**values)
    if "/" in name or name in {"", ".", ".."}:
        raise AdapterError(f"file name {name!r} from pattern {pattern!r} is not a plain file name")
    return name


class FileOutboundAdapter(OutboundAdapter):
    """Writes each message to ``file_path`` under ``filename`` (a pattern), atomically."""

    def __init__(self, operation: Any) -> None:
        super().__init__(operation)
        s = operation.settings
        self.folder = Path(s.file_path)
        self.pattern: str = s.filename
        self.charset: str = s.charset

    def send(self, data: Any, **fields: str) -> Path:
        """Write ``data`` (text, or a model as JSON); return the final path."""
        if isinstance(data, BaseModel):
            text = data.model_dump_json()
        else:
            text = str(data)
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / render_filename(self.pattern, self.operation, fields)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(text.encode(self.charset))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target
