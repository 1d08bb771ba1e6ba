"""``toygpt`` is a library the dashboard calls, never the other way round: importing it (and
every module in it) must not pull in streamlit. Checked in a fresh interpreter, because this
test process may have imported streamlit already for the page tests."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import toygpt

ROOT = Path(toygpt.__file__).resolve().parents[1]

IMPORT_EVERYTHING = """
import importlib, json, pkgutil, sys
def streamlit_modules():
    return sorted(m for m in sys.modules if m == "streamlit" or m.startswith("streamlit."))[:5]
import toygpt
names = ["toygpt"] + [m.name for m in pkgutil.walk_packages(toygpt.__path__, "toygpt.")]
failed = {}
for name in names:
    try:
        importlib.import_module(name)
    except Exception as exc:  # report, don't hide: a module that cannot import is a bug too
        failed[name] = f"{type(exc).__name__}: {exc}"
after_toygpt = streamlit_modules()
import streamlit  # the control: the same check must see streamlit once it is really imported
print(json.dumps({"imported": names, "failed": failed, "after_toygpt": after_toygpt,
                  "control": streamlit_modules()}))
"""


def test_importing_every_toygpt_module_never_imports_streamlit():
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    expected = {"toygpt"} | {m.name for m in pkgutil.walk_packages(toygpt.__path__, "toygpt.")}
    assert set(report["imported"]) == expected
    assert {"toygpt.model", "toygpt.checkpoint", "toygpt.pretrained"} <= expected
    assert report["failed"] == {}
    assert report["after_toygpt"] == [], f"toygpt imported {report['after_toygpt']}"
    assert "streamlit" in report["control"]
