"""What each file of a run folder may hold: types, ranges, finiteness and sizes.

A run folder can come from anywhere (an uploaded zip, a folder copied by hand), so everything
read from it is checked here, on import *and* on every read, before any page or command uses
it. A check returns the value it accepts or raises ``ValueError`` naming the file and field:

    >>> check_run_info({"step": "abc", "model_config": {}, "train_config": {}})
    Traceback (most recent call last):
    ...
    toygpt.run_schema.SchemaError: run.json: step='abc' must be a whole number ≥ 0

Why plain functions and not a schema library (pydantic is installed as a dependency of
another package)? The configs already validate themselves (``GPTConfig``, ``TrainConfig``
raise messages that name the fix); what is left is a dozen scalar fields and flat log rows,
which read more plainly as a table of small checks than as models with coercion rules to
switch off (pydantic would turn ``"3"`` into ``3`` unless every field is made strict).

Sizes come first, from ``toygpt.limits``: every file a run holds has a byte limit checked
against the zip's directory and the file on disk before it is read, and JSON a limit on how many
arrays/objects it may hold, checked before ``json.loads`` builds them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from toygpt.limits import LimitError
from toygpt.status import Status

# what run.json may say (a job's queued/stopping and a page's interrupted/unreadable are not saved)
RUN_STATUSES = tuple(s.value for s in (Status.RUNNING, Status.STOPPED, Status.FINISHED, Status.DIVERGED, Status.FAILED))
EVENT_TYPES = ("start", "step", "eval", "log", "end", "sample")
MAX_STEP = 10**12  # far beyond any run; a bound so arithmetic on it stays small
MAX_TEXT = 100_000  # characters in one text field (a sample's text, a message)
MAX_ROW_FIELDS = 64


class SchemaError(LimitError):
    """A run file holds something it may not; the message names the file and the field."""


# --------------------------------------------------------------------------------------------
# Field checks: each returns the accepted value or raises ValueError("<field>=... must ...")
# --------------------------------------------------------------------------------------------

Check = Callable[[str, Any], Any]


def count(name: str, value: Any, high: int = MAX_STEP) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise ValueError(f"{name}={value!r:.60} must be a whole number ≥ 0" + (f" and ≤ {high:,}" if high < MAX_STEP else ""))
    return value


def finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r:.60} must be a finite number")
    return value


def text(limit: int = 200) -> Check:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or len(value) > limit:
            raise ValueError(f"{name}={value!r:.60} must be text of at most {limit:,} characters")
        return value

    return check


def optional(inner: Check) -> Check:
    return lambda name, value: None if value is None else inner(name, value)


def choice(options: tuple[str, ...]) -> Check:
    def check(name: str, value: Any) -> str:
        if value not in options:
            raise ValueError(f"{name}={value!r:.60} must be one of {options}")
        return value

    return check


def tags(name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > 50 or not all(isinstance(t, str) and len(t) <= 100 for t in value):
        raise ValueError(f"{name}={value!r:.60} must be a list of at most 50 short texts")
    return value


def non_negative(name: str, value: Any) -> float:
    if finite(name, value) < 0:
        raise ValueError(f"{name}={value!r} must be ≥ 0")
    return value


def model_config(name: str, value: Any) -> dict[str, Any]:
    from toygpt.model import GPTConfig

    try:
        return GPTConfig.from_dict(value).to_dict()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: {exc}") from None


def train_config(name: str, value: Any) -> dict[str, Any]:
    from toygpt.train import TrainConfig

    try:
        return TrainConfig.from_dict(value).to_dict()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: {exc}") from None


# run.json: field -> check; fields not listed are kept as they are (the file's size bounds them)
RUN_FIELDS: dict[str, Check] = {
    "id": text(100), "name": text(200), "corpus": text(200), "corpus_seed": count,
    "tokenizer": text(200), "tags": tags, "init_from": optional(text(100)),
    "model_config": model_config, "train_config": train_config,
    "status": choice(RUN_STATUSES), "message": text(MAX_TEXT), "step": count,
    "best_val_loss": optional(finite), "val_loss": optional(finite), "best_step": optional(count),
    "elapsed": optional(non_negative), "created": text(40), "updated": text(40),
    "packed_from": text(100), "weights_dtype": choice(("float32", "float16")),
}  # fmt: skip
REQUIRED_RUN_FIELDS = ("model_config", "train_config")


def check_run_info(data: Any, source: str = "run.json") -> dict[str, Any]:
    """run.json checked field by field; raises ``SchemaError`` naming the first bad field."""
    if not isinstance(data, dict):
        raise SchemaError(f"{source}: must be a JSON object, got {type(data).__name__}")
    missing = [name for name in REQUIRED_RUN_FIELDS if name not in data]
    if missing:
        raise SchemaError(f"{source}: missing {missing}; this is not a toygpt run.json")
    checked = dict(data)
    for name, check in RUN_FIELDS.items():
        if name in data:
            try:
                checked[name] = check(name, data[name])
            except ValueError as exc:
                raise SchemaError(f"{source}: {exc}") from None
    return checked


# --------------------------------------------------------------------------------------------
# metrics.jsonl / samples.jsonl rows: flat objects of scalars
# --------------------------------------------------------------------------------------------


def check_event_row(row: Any) -> dict[str, Any]:
    """One logged event: ``type`` a known kind, ``step`` a count, every other value a short
    text, a boolean, null or a finite number (no nesting). Raises ``ValueError``."""
    if not isinstance(row, dict) or len(row) > MAX_ROW_FIELDS:
        raise ValueError(f"a row must be a JSON object of at most {MAX_ROW_FIELDS} fields")
    choice(EVENT_TYPES)("type", row.get("type"))
    count("step", row.get("step"))
    for key, value in row.items():
        if isinstance(value, str):
            text(MAX_TEXT)(key, value)
        elif isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool)):
            finite(key, value)
        elif value is not None and not isinstance(value, bool):
            raise ValueError(f"{key} holds a {type(value).__name__}; a row holds only texts, numbers, booleans and null")
    return row
