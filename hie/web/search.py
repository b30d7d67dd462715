"""The search form: query parameters in, one page of message headers out.

Parameters (all optional): ``since`` / ``until`` (``2026-01-01T12:00`` or with seconds, UTC),
``status``, ``type`` (MSH-9 as stored, ``ADT^A01``), ``source``, ``target``, ``control_id``
(MSH-10), ``field`` (``PID-3=12345``, ``PID-5.1=DOE``), ``page`` (1-based) and ``size``.
Problems are collected, not raised, so the page can show every one beside the form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlencode

from hie.hl7.path import parse_path
from hie.store import MessageHeader, MessageStore, Status

PAGE_SIZES = (25, 50, 100, 200)
#: The deepest row a page may start at: a far page of a broad search scans (and, searching by
#: field, reads the bodies of) every message before it. Narrower filters reach older messages.
MAX_OFFSET = 10_000
DEFAULT_SIZE = 50
_TEXT_PARAMS = ("status", "type", "source", "target", "control_id", "field", "since", "until")


@dataclass
class SearchQuery:
    """A parsed search: store filters, the page wanted, and any problems with the input."""

    params: dict[str, str]
    status: Status | None = None
    since: datetime | None = None
    until: datetime | None = None
    field_path: tuple[str, str] | None = None
    page: int = 1
    size: int = DEFAULT_SIZE
    problems: list[str] = field(default_factory=list)

    @property
    def offset(self) -> int:
        """Rows to skip for this page."""
        return (self.page - 1) * self.size

    def url(self, **changes: object) -> str:
        """The query string of this search with ``changes`` (e.g. ``page=3``), for links."""
        merged = {**self.params, "page": str(self.page), "size": str(self.size)}
        merged.update({k: str(v) for k, v in changes.items()})
        return "?" + urlencode({k: v for k, v in merged.items() if v})


def _time(name: str, text: str, problems: list[str]) -> datetime | None:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        problems.append(f"{name}: {text!r} is not a date and time like 2026-01-31T08:00")
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _int(text: str | None, default: int) -> int | None:
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        return None


def parse_query(raw: Mapping[str, str]) -> SearchQuery:
    """Read the search parameters; unknown ones are ignored, bad ones become ``problems``."""
    params = {k: raw[k].strip() for k in _TEXT_PARAMS if raw.get(k, "").strip()}
    q = SearchQuery(params)
    if "status" in params:
        try:
            q.status = Status(params["status"])
        except ValueError:
            known = ", ".join(s.value for s in Status)
            q.problems.append(f"status: {params['status']!r} is not one of {known}")
    if "since" in params:
        q.since = _time("since", params["since"], q.problems)
    if "until" in params:
        q.until = _time("until", params["until"], q.problems)
    if "field" in params:
        path, eq, value = params["field"].partition("=")
        try:
            parse_path(path.strip())
        except ValueError as exc:
            q.problems.append(f"field: {exc}")
        else:
            if not eq or not value.strip():
                q.problems.append("field: write it as PATH=VALUE, like PID-3=12345")
            else:
                q.field_path = (path.strip(), value.strip())
    page = _int(raw.get("page"), 1)
    size = _int(raw.get("size"), DEFAULT_SIZE)
    if page is None or page < 1:
        q.problems.append("page: must be a whole number from 1")
    else:
        q.page = page
    if size is None or size not in PAGE_SIZES:
        q.problems.append(f"size: must be one of {', '.join(map(str, PAGE_SIZES))}")
    else:
        q.size = size
    if q.offset > MAX_OFFSET:
        last = MAX_OFFSET // q.size + 1
        q.problems.append(
            f"page: at most {last} with {q.size} per page; narrow the search (status, type, "
            "since/until) to reach older messages"
        )
        q.page = 1
    return q


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of results and whether another follows."""

    rows: list[MessageHeader]
    has_next: bool


def run_search(store: MessageStore, q: SearchQuery) -> SearchPage:
    """Run ``q`` against the store; one row more than the page tells whether a next page exists.

    Counting every match would scan the whole table on a busy store, so pages are
    previous/next only.
    """
    rows = store.find(
        status=q.status,
        msg_type=q.params.get("type"),
        since=q.since,
        until=q.until,
        source=q.params.get("source"),
        target=q.params.get("target"),
        control_id=q.params.get("control_id"),
        field=q.field_path,
        limit=q.size + 1,
        offset=q.offset,
    )
    return SearchPage(rows[: q.size], len(rows) > q.size)
