"""Per-message hooks (middleware) around every host, listed on the production or on one item.

Processes and operations run them around each message of a task; services around each inbound
unit (an HL7 message the gateway received, a file or a message of a file), before it is stored:
there ``message`` is an envelope of what arrived, with no target yet.

``before_process`` runs in list order and ``after_process`` in reverse, so a hook wraps everything
listed after it. ``after_process`` always runs for a hook whose ``before_process`` ran, with
``result=`` or ``error=``. ``on_error`` runs (reverse order) when the host or a later hook raised.

A hook may raise ``SkipMessage`` or ``Retry`` on purpose and that propagates. Any other exception
from a hook fails the message exactly as one from the host would: an audit or validation hook that
breaks must not let a message slip past it. A hook that only observes sets ``optional = True``;
its errors are logged with its name and the message goes on.

Example::

    class StampHook(MessageHook):
        def before_process(self, host, message):
            log.info("%s <- %s", host.item_name, message.message_id)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hie.dotted_path import import_object
from hie.errors import ConfigError, Retry, SkipMessage

if TYPE_CHECKING:
    from hie.hosts.base import Host
    from hie.messages import Envelope
    from hie.production import Item, Production

log = logging.getLogger(__name__)


class MessageHook:
    """Base class for per-message hooks; every method is a no-op, override what you need."""

    #: An optional hook only observes: its own errors are logged and never fail the message.
    optional: bool = False

    @property
    def name(self) -> str:
        """The hook's name in logs and stored errors."""
        return type(self).__name__

    def before_process(self, host: Host, message: Envelope) -> None:
        """Called before the host sees ``message``; raise ``SkipMessage`` to drop it."""

    def after_process(
        self,
        host: Host,
        message: Envelope,
        *,
        result: Any = None,
        error: BaseException | None = None,
    ) -> None:
        """Called after the host, with its ``result`` or the ``error`` it raised."""

    def on_error(self, host: Host, message: Envelope, error: BaseException) -> None:
        """Called when the host or a later hook raised ``error`` (not for SkipMessage/Retry)."""


@dataclass
class Outcome:
    """What the host produced inside ``HookChain.processing``; set ``reply`` in the block."""

    reply: Any = None


@dataclass
class HookChain:
    """An ordered list of hooks, applied around one message."""

    hooks: list[MessageHook] = field(default_factory=list)

    def _call(self, hook: MessageHook, method: str, *args: Any, **kwargs: Any) -> None:
        try:
            getattr(hook, method)(*args, **kwargs)
        except (SkipMessage, Retry):
            raise
        except Exception as exc:
            if hook.optional:
                log.warning("optional hook %s.%s failed: %r", hook.name, method, exc)
                return
            # Name the hook: the stored error must say which hook broke the message.
            exc.add_note(f"raised by hook {hook.name}.{method}")
            raise

    @contextmanager
    def processing(self, host: Host, message: Envelope) -> Iterator[Outcome]:
        """Run ``before_*`` hooks, yield to the host, then ``on_error``/``after_*`` in reverse."""
        entered: list[MessageHook] = []
        outcome = Outcome()
        error: BaseException | None = None
        try:
            for hook in self.hooks:
                self._call(hook, "before_process", host, message)
                entered.append(hook)
            yield outcome
        except BaseException as exc:
            error = exc
            if not isinstance(exc, (SkipMessage, Retry)):
                for hook in reversed(entered):
                    try:
                        self._call(hook, "on_error", host, message, exc)
                    except Exception as hook_exc:
                        log.error("hook %s.on_error failed: %r", hook.name, hook_exc)
            raise
        finally:
            self._after(entered, host, message, outcome, error)

    def _after(
        self,
        entered: list[MessageHook],
        host: Host,
        message: Envelope,
        outcome: Outcome,
        error: BaseException | None,
    ) -> None:
        for hook in reversed(entered):
            if error is None:
                self._call(hook, "after_process", host, message, result=outcome.reply)
            else:
                try:
                    self._call(hook, "after_process", host, message, error=error)
                except Exception as hook_exc:
                    log.error("hook %s.after_process failed: %r", hook.name, hook_exc)


def hook_class(path: str) -> type[MessageHook]:
    """The hook class at ``package.module:Class`` or ``package.module.Class``; ``ConfigError``."""
    try:
        cls = import_object(path)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"hook {path!r} cannot be imported: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, MessageHook)):
        raise ConfigError(f"hook {path!r} is not a MessageHook subclass")
    return cls


def load_hook(path: str) -> MessageHook:
    """Instantiate a hook from ``package.module:Class`` or ``package.module.Class``."""
    return hook_class(path)()


def hooks_for(production: Production, item: Item) -> HookChain:
    """The hooks around ``item``'s messages: the production's, then the item's own."""
    return HookChain([load_hook(p) for p in [*production.hooks, *item.hooks]])
