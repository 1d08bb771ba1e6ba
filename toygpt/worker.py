"""A background job in its own process: ``python -m toygpt.worker train|lab``.

The server side is ``toygpt.job_process`` (which says why a process); this is the other end.
It reads one JSON line from stdin — ``{"threads": 2, "nice": 10, "job": {...}}`` — and runs
the same code a job on a thread runs (``toygpt.jobs.run_training``, or
``toygpt.lab.job.run_lab``), writing each event as a JSON line on stdout and, last,
``{"type": "outcome", "status", "message", "detail"}`` (``toygpt.jobs.job_outcome``).

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
    from toygpt.jobs import TrainSpec, run_training

    spec = TrainSpec.from_dict(job["spec"])
    end = run_training(spec, send, STOP, on_run=lambda run: send({"type": "run", "id": run.id}))
    return end["status"], end["message"]


def run_lab(job: dict[str, Any], send: Messages) -> tuple[str, str]:
    from toygpt.lab.job import params_from_dict, run_lab_experiment

    params = params_from_dict(job["experiment"], job["params"])
    status, message, run_id = run_lab_experiment(job["experiment"], params, send, STOP, bool(job.get("save", True)))
    if run_id is not None:
        send({"type": "run", "id": run_id})
    return status, message


KINDS = {"train": run_train, "lab": run_lab}


def main(argv: list[str]) -> int:
    for signum in (signal.SIGTERM, signal.SIGINT):  # first: Stop may come while torch imports
        signal.signal(signum, _on_signal)
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print must not break the messages
    send = Messages(out)
    send({"type": "ready", "pid": os.getpid()})
    if len(argv) != 1 or argv[0] not in KINDS:
        print(f"usage: python -m toygpt.worker {{{'|'.join(KINDS)}}} (the job as one JSON line on stdin)", file=sys.stderr)
        return 2
    request = json.loads(sys.stdin.readline() or "null")
    if not isinstance(request, dict) or not isinstance(request.get("job"), dict):
        print("the job must come as one JSON object on stdin: {\"threads\": …, \"nice\": …, \"job\": {…}}", file=sys.stderr)
        return 2
    threading.Thread(target=_watch_server, args=(sys.stdin,), daemon=True, name="watch-server").start()
    if request.get("nice") and hasattr(os, "nice"):
        os.nice(int(request["nice"]))  # the pages' reruns win the cores
    import torch

    from toygpt.jobs import job_outcome
    from toygpt.stopping import stop_scope

    if request.get("threads"):
        torch.set_num_threads(int(request["threads"]))
    with stop_scope(STOP):
        status, message, detail = job_outcome(lambda: KINDS[argv[0]](request["job"], send))
    send({"type": "outcome", "status": status, "message": message, "detail": detail})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
