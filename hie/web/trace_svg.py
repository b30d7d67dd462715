"""A session drawn as a sequence diagram, in SVG written on the server (no JavaScript).

Lifelines are the items the session touched, ordered like the flow (outside senders, services,
processes, operations); each message is one arrow from its source to its target, labelled with
its type, status, time since the session began, attempts and retries, and the ACK. Each arrow is
a link to its message's page.

Every piece of text passes through ``_text`` (XML escaping) before it is written, because item
names, errors and ACK texts come from outside; the result is safe to embed in HTML as is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from html import escape

from hie.store import EventRecord, MessageHeader

LANE = 190  # horizontal distance between lifelines
ROW = 64  # vertical distance between arrows
TOP = 70  # below the lifeline headers
MARGIN = 30
#: Lifelines sort by the kind of item: outside senders first, then the flow's own order.
KIND_ORDER = {"external": 0, "service": 1, "process": 2, "operation": 3}
EXTERNAL = "(outside)"


def _text(value: object) -> str:
    return escape(str(value), quote=True)


@dataclass(frozen=True, slots=True)
class Hop:
    """One arrow: a message, where it went, and what its trail says about it."""

    header: MessageHeader
    source: str
    target: str
    offset_ms: float
    retries: int
    ack: str | None

    @property
    def label(self) -> str:
        """Upper label: type, status and time since the session's first message."""
        kind = self.header.msg_type or "message"
        return f"{kind} · {self.header.status} · +{self.offset_ms:.0f} ms"

    @property
    def detail(self) -> str:
        """Lower label: clock time, attempts, retries and ACK."""
        parts = [self.header.created_at.strftime("%H:%M:%S.%f")[:-3]]
        if self.header.attempts:
            parts.append(f"attempts {self.header.attempts}")
        if self.retries:
            parts.append(f"retries {self.retries}")
        if self.ack:
            parts.append(f"ACK {self.ack}")
        return " · ".join(parts)


def hops(headers: Iterable[MessageHeader], events: Iterable[EventRecord]) -> list[Hop]:
    """The arrows of a session, oldest first."""
    trail: dict[str, list[EventRecord]] = {}
    for event in events:
        trail.setdefault(event.message_id, []).append(event)
    ordered = sorted(headers, key=lambda h: (h.created_at, h.message_id))
    if not ordered:
        return []
    start = ordered[0].created_at
    out = []
    for h in ordered:
        own = trail.get(h.message_id, [])
        retries = sum(1 for e in own if e.event == "retried")
        ack = h.ack_code
        if ack is None:
            ack = next((e.detail for e in own if e.event in ("ack_sent", "ack_received")), None)
        offset = (h.created_at - start).total_seconds() * 1000.0
        source = h.source or EXTERNAL
        out.append(Hop(h, source, h.target or source, offset, retries, ack))
    return out


def lifelines(hop_list: list[Hop], kind_of: Callable[[str], str]) -> list[str]:
    """Participants in order of appearance, then stably by kind (services before operations)."""
    seen: list[str] = []
    for hop in hop_list:
        for name in (hop.source, hop.target):
            if name not in seen:
                seen.append(name)
    return sorted(seen, key=lambda n: KIND_ORDER.get(kind_of(n), 0))


def render_svg(
    hop_list: list[Hop],
    kind_of: Callable[[str], str],
    href: Callable[[str], str],
    *,
    current: str | None = None,
) -> str:
    """The sequence diagram as one ``<svg>`` element; ``current`` highlights one message."""
    names = lifelines(hop_list, kind_of)
    x = {name: MARGIN + LANE // 2 + i * LANE for i, name in enumerate(names)}
    width = max(2 * MARGIN + LANE * max(len(names), 1), 420)
    height = TOP + ROW * (len(hop_list) + 1)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="trace" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="sequence diagram of the session">',
        "<defs>"
        '<marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="context-stroke"/></marker></defs>',
    ]
    for name in names:
        cx = x[name]
        out.append(
            f'<g class="lifeline kind-{_text(kind_of(name))}">'
            f'<rect x="{cx - LANE // 2 + 8}" y="8" width="{LANE - 16}" height="40" rx="6"/>'
            f'<text x="{cx}" y="26" text-anchor="middle" class="name">{_text(name)}</text>'
            f'<text x="{cx}" y="41" text-anchor="middle" class="kind">{_text(kind_of(name))}'
            f"</text>"
            f'<line x1="{cx}" y1="48" x2="{cx}" y2="{height - 10}"/></g>'
        )
    for row, hop in enumerate(hop_list):
        out.append(_arrow(hop, x, TOP + ROW * row + 30, href, hop.header.message_id == current))
    out.append("</svg>")
    return "".join(out)


def _arrow(hop: Hop, x: dict[str, int], y: int, href: Callable[[str], str], current: bool) -> str:
    x1, x2 = x[hop.source], x[hop.target]
    status = _text(hop.header.status)
    title = f"{hop.source} → {hop.target}: {hop.label}; {hop.detail}"
    if hop.header.error:
        title += f"; error: {hop.header.error[:300]}"
    if x1 == x2:  # a message an item sent to itself: a small loop
        path = f"M{x1},{y} h40 v18 h-40"
        mid = x1 + 46
        anchor = "start"
    else:
        path = f"M{x1},{y} L{x2},{y}"
        mid = (x1 + x2) // 2
        anchor = "middle"
    classes = f"hop status-{status}" + (" current" if current else "")
    return (
        f'<a href="{_text(href(hop.header.message_id))}" class="{classes}" '
        f'data-message-id="{_text(hop.header.message_id)}">'
        f"<title>{_text(title)}</title>"
        f'<path d="{path}" marker-end="url(#arrow)"/>'
        f'<text x="{mid}" y="{y - 7}" text-anchor="{anchor}" class="label">{_text(hop.label)}'
        f"</text>"
        f'<text x="{mid}" y="{y + 15}" text-anchor="{anchor}" class="detail">'
        f"{_text(hop.detail)}</text></a>"
    )
