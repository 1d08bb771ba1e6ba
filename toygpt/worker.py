"""A background job in its own process: ``python -m toygpt.worker [--nice N]``.

The server side is ``toygpt.job_process`` (which says why a process); this is the other end.
It lowers its priority by N (the pages' reruns win the cores, even while it imports torch),
imports torch, then reads one JSON line from stdin — ``{"kind": "train" | "lab", "threads": 2,
"job": {...}, "env": {...}, "cwd": "..."}`` — and
runs the same code a job on a thread runs (``toygpt.pipeline.run_training``, or
``toygpt.lab.job.run_lab_experiment``), writing each event as a JSON line on stdout and, last,
``{"type": "outcome", "status", "message", "detail"}`` (``toygpt.jobs.job_outcome``). If stdin
ends before a job comes (a spare the server no longer needs), it just ends.

Stop: SIGTERM or SIGINT, any number of times, sets the job's stop event (the trainer stops
after its step and saves; every long loop checks it, ``toygpt.stopping``). The end of stdin
does the same: the server that started it has stopped or crashed, so the run is saved and the
worker ends rather than train unwatched. Anything else printed goes to stderr, which the server
keeps the tail of for a failure's message.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
from typing import Any, TextIO

STOP = threading.Event()
# A Stop that comes while this process still starts (importing torch) is first seen once the
# data is being prepared; a quick preparation may finish within this grace, so the run is made
# and saved as "stopped" (as on a thread, where preparation starts at once) instead of lost. A
# long one (BPE on a big text) still ends this soon after, inside Stop's ~2 s (toygpt.stopping).
PREPARE_GRACE_S = 1.5


def _on_signal(signum: int, frame: Any) -> None:
    STOP.set()  # a second Stop changes nothing: the job is already saving and ending


def _watch_server(stdin: TextIO) -> None:
    """Stop when stdin ends (the server closed it, or died)."""
    while stdin.readline():
        pass
    STOP.set()


def _plain(value: Any) -> Any:
    """JSON for anything an event may hold (a tensor's number, a tuple); NaN stays NaN."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return value
    return str(value)


class Messages:
    """Writes one JSON object per line to the server; if the server is gone, stops the job."""

    def __init__(self, out: TextIO) -> None:
        self.out, self.lock, self.broken = out, threading.Lock(), False

    def __call__(self, message: dict[str, Any]) -> None:
        line = json.dumps(message, default=_plain, ensure_ascii=True)
        with self.lock:
            if self.broken:
                return
            try:
                self.out.write(line + "\n")
                self.out.flush()
            except (OSError, ValueError):  # the pipe is closed: nobody is watching any more
                self.broken = True
                STOP.set()


def run_train(job: dict[str, Any], send: Messages) -> tuple[str, str]:
    from toygpt.pipeline import TrainSpec, run_training

    spec = TrainSpec.from_dict(job["spec"])
    end = run_training(spec, send, STOP, on_run=lambda run: send({"type": "run", "id": run.id}),
                       prepare_grace=PREPARE_GRACE_S)  # fmt: skip
    return end["status"], end["message"]


def run_lab(job: dict[str, Any], send: Messages) -> tuple[str, str]:
    from toygpt.lab.job import params_from_dict, run_lab_experiment

    params = params_from_dict(job["experiment"], job["params"])
    status, message, run_id = run_lab_experiment(job["experiment"], params, send, STOP, bool(job.get("save", True)))
    if run_id is not None:
        send({"type": "run", "id": run_id})
    return status, message


KINDS = {"train": run_train, "lab": run_lab}


USAGE = ('usage: python -m toygpt.worker [--nice N], then one JSON line on stdin: {"kind": "train" | "lab", '
         '"threads": 2, "job": {...}, "env": {...}, "cwd": "..."}')


def read_request(stdin: TextIO) -> dict[str, Any] | None:
    """The job line (None: stdin ended first); ValueError for anything but a valid request."""
    line = stdin.readline()
    if not line:
        return None
    request = json.loads(line)
    if not isinstance(request, dict) or request.get("kind") not in KINDS or not isinstance(request.get("job"), dict):
        raise ValueError("not a job request")
    return request


def take_settings(request: dict[str, Any]) -> None:
    """The server's settings as they are now (a spare was started earlier): its ``TOYGPT_*``
    (and tiktoken, Hugging Face) variables and its working folder, so ./runs is its ./runs."""
    from toygpt.job_process import SETTINGS_PREFIXES

    for name in [k for k in os.environ if k.startswith(SETTINGS_PREFIXES)]:
        os.environ.pop(name)
    os.environ.update({str(k): str(v) for k, v in (request.get("env") or {}).items()})
    if request.get("cwd"):
        os.chdir(request["cwd"])


def main(argv: list[str]) -> int:
    for signum in (signal.SIGTERM, signal.SIGINT):  # first: Stop may come while torch imports
        signal.signal(signum, _on_signal)
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print must not break the messages
    send = Messages(out)
    send({"type": "ready", "pid": os.getpid()})
    if argv and (len(argv) != 2 or argv[0] != "--nice" or not argv[1].isdigit()):
        print(USAGE, file=sys.stderr)
        return 2
    if argv and hasattr(os, "nice"):
        os.nice(int(argv[1]))
    import torch

    from toygpt.jobs import job_outcome
    from toygpt.stopping import stop_scope

    try:
        request = read_request(sys.stdin)
    except ValueError:
        print(USAGE, file=sys.stderr)
        return 2
    if request is None:
        return 0  # a spare nobody needed
    threading.Thread(target=_watch_server, args=(sys.stdin,), daemon=True, name="watch-server").start()
    take_settings(request)
    if request.get("threads"):
        torch.set_num_threads(int(request["threads"]))
    with stop_scope(STOP):
        status, message, detail = job_outcome(lambda: KINDS[request["kind"]](request["job"], send))
    send({"type": "outcome", "status": status, "message": message, "detail": detail})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
