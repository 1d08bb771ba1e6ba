"""Stop means stop: a long loop anywhere in toygpt can end when its job is asked to.

A job (the dashboard's background thread, or the CLI on Ctrl-C) holds a ``threading.Event``.
Running its work inside ``stop_scope(event)`` lets every long loop underneath — BPE merges,
encoding a corpus, evaluation batches, sampled tokens — call ``check_stop()`` once per
iteration, which raises ``StopRequested`` when the event is set. Nothing has to pass the event
down through every function, and outside a scope ``check_stop()`` does nothing.

    >>> import threading
    >>> stop = threading.Event()
    >>> with stop_scope(stop):
    ...     stop.set()
    ...     check_stop()
    Traceback (most recent call last):
    ...
    toygpt.stopping.StopRequested: stopped on request

``grace`` lets work that is nearly done finish: ``check_stop`` raises only once the event has
been set for that many seconds (the trainer uses it so a stopped run still gets its final,
usually short, evaluation; a 10,000-batch one is cut off).
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

STOP_WITHIN_S = 2.0  # what a user may expect between pressing Stop and the job ending


class StopRequested(Exception):
    """Raised by ``check_stop`` inside a stop scope whose event is set."""

    def __init__(self, message: str = "stopped on request") -> None:
        super().__init__(message)


@dataclass
class _Scope:
    event: threading.Event
    grace: float = 0.0
    seen_at: float | None = field(default=None)


_scope: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("toygpt_stop_scope", default=None)


@contextlib.contextmanager
def stop_scope(event: threading.Event | None, grace: float = 0.0) -> Iterator[None]:
    """Within the block, ``check_stop()`` raises ``StopRequested`` once ``event`` has been set
    for ``grace`` seconds (``event=None``: a scope that never stops, e.g. to finish a save)."""
    token = _scope.set(_Scope(event, grace) if event is not None else None)
    try:
        yield
    finally:
        _scope.reset(token)


def stop_requested() -> bool:
    """True when the current scope's event is set (no grace; for loops that end themselves)."""
    scope = _scope.get()
    return scope is not None and scope.event.is_set()


def check_stop() -> None:
    """Raise ``StopRequested`` if the current scope's job was asked to stop (cheap: call it once
    per iteration of any loop that can run for more than a moment)."""
    scope = _scope.get()
    if scope is None or not scope.event.is_set():
        return
    now = time.monotonic()
    if scope.seen_at is None:
        scope.seen_at = now
    if now - scope.seen_at >= scope.grace:
        raise StopRequested()
