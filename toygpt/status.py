"""Where a run or a background job stands: the one vocabulary of statuses.

The trainer ends with one of them, a run folder records it in ``run.json``, a background job
reports it in its snapshot, and the pages colour their messages by it. ``Status`` is a
``StrEnum``: each member *is* its string (``Status.FINISHED == "finished"``), so JSON files
written before this module existed still read the same.

    status        who says it                       meaning
    queued        a job                             waiting for its thread to start
    running       a job, run.json                   training (or measuring) now
    stopping      a job                             Stop was pressed; ends after the current step
    stopped       trainer, job, run.json            ended on request; weights saved, can resume
    finished      trainer, job, run.json            reached its step or time budget
    diverged      trainer, job, run.json            the loss became NaN or inf; last good save kept
    failed        job, run.json                     an error ended it; the message says which
    interrupted   a page, about a run.json          says "running" but nothing here trains it
                                                    (server restart, crash): resume from its save
    unreadable    ``runs.list_runs``                its run.json cannot be read
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FINISHED = "finished"
    DIVERGED = "diverged"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    UNREADABLE = "unreadable"


ACTIVE = frozenset({Status.QUEUED, Status.RUNNING, Status.STOPPING})  # a job still at work
# What a finished training leaves behind that is worth loading as a model: a diverged run keeps
# its last save from before the loss blew up; a failed one may have no weights at all.
HAS_MODEL = frozenset({Status.FINISHED, Status.STOPPED, Status.DIVERGED})


def is_active(status: str) -> bool:
    """True while a job is queued, running or stopping (``status`` may be a plain string)."""
    return status in ACTIVE
