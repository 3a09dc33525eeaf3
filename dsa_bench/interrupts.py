"""Telling the user's Ctrl-C (or SIGTERM) apart from a KeyboardInterrupt that code raises itself.

Both arrive as KeyboardInterrupt. While `tracking()` is active, SIGINT and SIGTERM go through a handler
that first records that the user asked to stop: a KeyboardInterrupt with no such record was raised by
code (a plug-in), and is that code's failure, not a reason to end the sweep. Outside the main thread
no handler can be installed and every KeyboardInterrupt counts as the user's.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

_depth = 0
_requested = False


def _on_signal(signum, frame):
    global _requested
    _requested = True
    raise KeyboardInterrupt


@contextmanager
def tracking() -> Iterator[None]:
    """Route SIGINT and SIGTERM (a batch scheduler's stop) through _on_signal; re-entrant."""
    global _depth, _requested
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _depth == 0:
        _requested = False
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def user_requested_stop() -> bool:
    """Whether a KeyboardInterrupt now in flight came from the user (or cannot be told apart)."""
    return _requested or _depth == 0


def reraise_if_user_interrupt(exc: BaseException) -> None:
    """Re-raise `exc` when it is the user's interrupt; return when it is code's own exception."""
    if isinstance(exc, KeyboardInterrupt) and user_requested_stop():
        raise exc
