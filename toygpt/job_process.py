"""A background job in its own process, seen from the server: start it, read it, stop it.

Why a process and not a thread of the server (``bench/app_training.py``, issue 17): torch's
thread count is process-wide and the GIL is shared, so a training thread and the pages' reruns
slow each other down; a worker process gets its own threads, a lower CPU priority (``os.nice``)
so a page rerun wins the cores, and its memory goes back to the system when it ends. A crash
in it (out of memory, a segfault in a kernel) ends the job, never the server.

The conversation is JSON lines, never pickle (``toygpt.worker`` is the other side)::

    server → worker   stdin: one line, the job ({"kind": "train", "threads": 2, "nice": 10,
                      "job": {...}, "env": ..., "cwd": ...}); then stdin stays open: its end
                      (the server stopped or crashed) means Stop
    worker → server   stdout: {"type": "ready"} once Stop can be signalled, then the job's own
                      events, and last {"type": "outcome", "status", "message", "detail"}
    Stop              SIGTERM (the worker stops after its current step and saves); if it is
                      still alive ``kill_after_s`` later, SIGKILL (checkpoints are one-unit
                      commits: the run resumes from its last complete save)

    proc = WorkerProcess(WorkerSettings()).spawn()     # imports torch while nobody waits
    proc.send("train", {"spec": ...}, threads=2)
    for message in proc.messages(): ...
    proc.stop(); proc.wait()

A registry keeps one such process spawned ahead (``WorkerSettings.spare``): Start then costs no
``import torch`` (2.4 s on an idle laptop, 5–10 s on busy cores) but ~155 MiB sits idle. The job
carries the server's ``TOYGPT_*`` settings and working folder, so a spare started earlier
writes where the server reads now.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the folder holding toygpt/: the worker imports the same code
STDERR_TAIL_CHARS = 4000  # what a failed job shows of its worker's stderr


@dataclass(frozen=True)
class WorkerSettings:
    """How a job's own process runs.

    ``nice`` is added to the worker's niceness (0–19; Linux/macOS): at 10 a page rerun gets
    about nine tenths of a core it shares with the worker. ``omp_passive`` sets
    ``OMP_WAIT_POLICY=PASSIVE`` for it (OpenMP threads sleep instead of spinning when a core is
    taken by someone else). ``kill_after_s`` is how long Stop waits for a clean end before
    SIGKILL. ``spare`` keeps one worker started ahead, so a job starts without waiting for
    ``import torch`` (at ~155 MiB of memory while it waits)."""

    nice: int = 10
    omp_passive: bool = True
    kill_after_s: float = 30.0
    spare: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.nice, int) or not 0 <= self.nice <= 19:
            raise ValueError(f"nice={self.nice!r}; choose a whole number from 0 (normal priority) to 19 (lowest)")
        if not 0 < self.kill_after_s <= 3600:
            raise ValueError(f"kill_after_s={self.kill_after_s!r}; choose a number of seconds in (0, 3600]")


def signal_name(returncode: int) -> str:
    """A worker's exit in words: ``-9`` → "killed by SIGKILL (out of memory, or kill -9?)"."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    hint = " (out of memory, or kill -9?)" if name == "SIGKILL" else ""
    return f"killed by {name}{hint}"


SETTINGS_PREFIXES = ("TOYGPT_", "TIKTOKEN_", "HF_")  # the environment a job reads when it runs


def job_environment() -> dict[str, str]:
    """The settings a job must see as the server sees them now (folders, offline, budget)."""
    return {k: v for k, v in os.environ.items() if k.startswith(SETTINGS_PREFIXES)}


class WorkerProcess:
    """One worker: ``python -m toygpt.worker``, spawned, then given one job on its stdin."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.kind = ""
        self.process: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._ready = self._stop_wanted = False
        self._stop_sent_at: float | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=200)
        self._stderr_reader: threading.Thread | None = None

    def spawn(self) -> WorkerProcess:
        """Start the process (it imports torch, then waits for its job)."""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))}
        if self.settings.omp_passive:
            env["OMP_WAIT_POLICY"] = "PASSIVE"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "toygpt.worker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace", env=env,
        )  # fmt: skip
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True, name="toygpt-worker-stderr")
        self._stderr_reader.start()
        return self

    @property
    def waiting(self) -> bool:
        """Spawned, alive, and not given a job yet (a spare that can still take one)."""
        return self.process is not None and not self.kind and self.process.poll() is None

    def send(self, kind: str, job: dict[str, Any], threads: int | None = None) -> WorkerProcess:
        """Give the worker its one job, with the server's settings and working folder as they are now."""
        self.kind = kind
        request = {"kind": kind, "threads": threads, "nice": self.settings.nice, "job": job,
                   "env": job_environment(), "cwd": os.getcwd()}  # fmt: skip
        try:
            self.process.stdin.write(json.dumps(request, ensure_ascii=True) + "\n")  # stdin stays open: its end
            self.process.stdin.flush()  # tells the worker the server is gone
        except OSError:
            pass  # it died: messages() ends and wait() says how
        return self

    def discard(self) -> None:
        """End a worker that never got a job (closing its stdin is enough; then wait for it)."""
        try:
            self.process.stdin.close()
            self.process.wait(30)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self._stderr.append(line)

    def messages(self) -> Iterator[dict[str, Any]]:
        """The worker's JSON messages as they come (a line that is not JSON goes to the stderr
        tail); ends when the worker closes its stdout (it ended)."""
        for line in self.process.stdout:
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                self._stderr.append(line)
                continue
            if not isinstance(message, dict):
                continue
            if message.get("type") == "ready":
                with self._lock:
                    self._ready = True
                    if self._stop_wanted:
                        self._signal_stop()
                continue
            yield message

    def stop(self) -> None:
        """Ask the worker to stop and save (again: harmless). SIGTERM as soon as its handler is
        in place; SIGKILL if it is still alive ``kill_after_s`` after that."""
        with self._lock:
            self._stop_wanted = True
            if self._ready and self._stop_sent_at is None:
                self._signal_stop()

    def _signal_stop(self) -> None:  # under the lock
        if self._stop_sent_at is not None or self.process is None or self.process.poll() is not None:
            return
        self._stop_sent_at = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        timer = threading.Timer(self.settings.kill_after_s, self.kill)
        timer.daemon = True
        timer.start()

    def kill(self) -> None:
        """SIGKILL, if it still runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()

    @property
    def killed_after_stop(self) -> bool:
        return self._stop_sent_at is not None and self.process is not None and self.process.returncode == -signal.SIGKILL

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the worker to end; its return code (negative: the signal that ended it)."""
        code = self.process.wait(timeout)
        if self._stderr_reader is not None:
            self._stderr_reader.join(5)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            try:
                stream.close()
            except OSError:
                pass
        return code

    def stderr_tail(self) -> str:
        return "".join(self._stderr)[-STDERR_TAIL_CHARS:]
