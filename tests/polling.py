"""Waiting, in a test, for something another thread or process does (a job's step, a worker's
exit): poll until it holds, or fail the test with what was awaited."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(predicate: Callable[[], object], timeout: float = 60.0, what: str = "the condition",
             interval: float = 0.05) -> None:  # fmt: skip
    """Call ``predicate`` every ``interval`` seconds until it returns something true; an
    AssertionError naming ``what`` when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(interval)
