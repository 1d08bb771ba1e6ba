"""How numbers read, the same everywhere: durations, byte sizes and counts.

Pages, the CLI and the library's own messages ("this run needs about 3.2 GiB") all format through
these, so a size or a time shown in two places is written the same way.
"""

from __future__ import annotations

import math


def clock(seconds: float | None, unknown: str = "–") -> str:
    """A duration as a clock reading, rounded to the second; ``unknown`` for None or NaN.

    >>> clock(75.2), clock(3725), clock(None), clock(None, unknown="--:--")
    ('1:15', '1:02:05', '–', '--:--')
    """
    if seconds is None or not math.isfinite(seconds):
        return unknown
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def about(seconds: float) -> str:
    """A rough duration for an estimate made before anything runs.

    >>> about(2), about(42.4), about(330)
    ('a few seconds', 'about 42 s', 'about 5.5 min')
    """
    if seconds < 5:
        return "a few seconds"
    return f"about {seconds:.0f} s" if seconds < 100 else f"about {seconds / 60:.1f} min"


def human_bytes(n: int | float, decimals: int | None = None) -> str:
    """A byte size in powers of 1024: three significant figures, or ``decimals`` places.

    >>> human_bytes(512), human_bytes(3_239_424), human_bytes(3 * 2**30, decimals=1)
    ('512 B', '3.09 MiB', '3.0 GiB')
    """
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            break
        value /= 1024
    if unit == "B":
        return f"{value:.0f} B"
    return f"{value:.3g} {unit}" if decimals is None else f"{value:,.{decimals}f} {unit}"


def human_count(n: int | float) -> str:
    """A count in thousands, millions, billions, three significant figures.

    >>> human_count(85_000_000), human_count(1234), human_count(12)
    ('85 M', '1.23 k', '12')
    """
    value = float(n)
    for unit in ("", " k", " M", " G", " T"):
        if abs(value) < 1000 or unit == " T":
            break
        value /= 1000
    return f"{value:.3g}{unit}"


def counted(n: int, noun: str) -> str:
    """``n`` with thousands separators and ``noun`` in the singular or plural (a regular plural).

    >>> counted(1, "token"), counted(1234, "merge"), counted(0, "byte")
    ('1 token', '1,234 merges', '0 bytes')
    """
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def short_number(value: float) -> str:
    """A measured ratio or rate as a reader wants it: three significant figures below 100, whole
    numbers with separators above (never an exponent).

    >>> short_number(0.8412), short_number(53.94), short_number(7110.9), short_number(1.0)
    ('0.841', '53.9', '7,111', '1')
    """
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
