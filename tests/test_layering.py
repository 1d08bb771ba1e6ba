"""File order is teaching order: README's "Reading order of the code" lists every module of
``toygpt``, and each module imports only modules listed before it (function-level imports
count too: a late import is still a dependency). Imports are read with ``ast``, nothing runs."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "toygpt"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> set[str]:
    return {module_name(p) for p in PACKAGE.rglob("*.py")}


def reading_order(readme: str) -> list[str]:
    """Module names in the order README's reading-order list names them. A folder entry
    (`toygpt/lab/`) is followed by its modules in order (`setup` → `budget` ...; a later mention
    of one is only a mention); the folder's ``__init__`` (its public face) comes right after them."""
    section = readme.split("## Reading order of the code", 1)[1].split("\n## ", 1)[0]
    items = re.split(r"\n(?=\d+\. )", section)
    order = ["toygpt"]
    for item in items:
        folder = None
        for token in re.findall(r"`([^`]+)`", item):
            if token.startswith("toygpt/") and token.endswith(".py"):
                order.append(module_name(ROOT / token))
            elif token.startswith("toygpt/") and token.endswith("/"):
                if folder:
                    order.append(folder)
                folder = module_name(ROOT / token / "__init__.py")
            elif folder and re.fullmatch(r"[a-z_]+", token):
                candidate = f"{folder}.{token}"
                if (ROOT / (candidate.replace(".", "/") + ".py")).exists() and candidate not in order:
                    order.append(candidate)
        if folder:
            order.append(folder)
    return order


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The toygpt modules ``path`` imports: ``from toygpt.x import y`` is ``toygpt.x.y`` when
    that is a module, else ``toygpt.x``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "toygpt"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "toygpt":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
    return found - ({module_name(path)} if path.is_relative_to(ROOT) else set())


def test_reading_order_names_every_module_once():
    order = reading_order((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(order) == len(set(order)), [m for m in order if order.count(m) > 1]
    assert set(order) == all_modules(), {"missing from README": sorted(all_modules() - set(order)),
                                         "not a module": sorted(set(order) - all_modules())}


def test_each_module_imports_only_modules_before_it():
    order = reading_order((ROOT / "README.md").read_text(encoding="utf-8"))
    position = {name: i for i, name in enumerate(order)}
    known = all_modules()
    backwards = []
    for path in sorted(PACKAGE.rglob("*.py")):
        me = module_name(path)
        for dependency in sorted(imported_modules(path, known)):
            if dependency != "toygpt" and position.get(dependency, -1) >= position.get(me, -1):
                backwards.append(f"{me} imports {dependency}, which README lists after it")
    assert backwards == []


def test_the_check_sees_a_backwards_import(tmp_path):
    """The control: a module that imports a later one is reported, top-level or inside a function."""
    (tmp_path / "mod.py").write_text("def f():\n    from toygpt.viz import base_layout\n    from toygpt import runs\n")
    found = imported_modules(tmp_path / "mod.py", all_modules())
    assert found == {"toygpt.viz", "toygpt.runs"}
    order = reading_order("## Reading order of the code\n1. `toygpt/lab/` — `setup` → `job`.\n2. `toygpt/model.py`\n")
    assert order == ["toygpt", "toygpt.lab.setup", "toygpt.lab.job", "toygpt.lab", "toygpt.model"]
