"""Hook points: named values of a forward pass that a function can read or replace.

``model.py`` builds its modules on ``Hooked``: each named value (``blocks.0.attn.hook_pattern``
...; the table is in ``model.py``) passes through ``Hooked.hook``, which costs one attribute read
while nothing is attached. ``toygpt.inspection.run_with_cache`` / ``run_with_hooks`` attach
functions for one call, in the style of TransformerLens.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import torch
import torch.nn as nn

# fn(value, name) -> None to only read the value, or a tensor of the same shape to replace it
HookFn = Callable[[torch.Tensor, str], "torch.Tensor | None"]


class HookPoints:
    """The functions attached to one model's hook points, per thread.

    A model cached for a web app is shared by every visitor's thread, so functions attached in
    one thread are stored in a ``threading.local``: another thread's forward pass, running at the
    same moment, never calls them and never has a value replaced. ``active`` counts attachments
    in any thread; while it is 0 every hook point costs one attribute read (training and
    generation run with it at 0).
    """

    def __init__(self) -> None:
        self.active = 0
        self._local = threading.local()
        self._lock = threading.Lock()

    def attached_here(self) -> dict[str, list[HookFn]]:
        """This thread's functions by hook name (empty when none)."""
        return getattr(self._local, "hooks", None) or {}

    def wants(self, *names: str) -> bool:
        """True when this thread attached a function to one of ``names``."""
        hooks = self.attached_here()
        return any(name in hooks for name in names)

    def run(self, name: str, value: torch.Tensor) -> torch.Tensor:
        """Pass ``value`` through this thread's functions for ``name``, in the order attached."""
        for fn in self.attached_here().get(name, ()):
            replaced = fn(value, name)
            if replaced is not None:
                if not isinstance(replaced, torch.Tensor) or replaced.shape != value.shape:
                    shape = getattr(replaced, "shape", type(replaced).__name__)
                    raise ValueError(
                        f"the hook on {name} returned {shape}; return None to only read the value, "
                        f"or a tensor of its shape {tuple(value.shape)} to replace it"
                    )
                value = replaced
        return value

    @contextmanager
    def attach(self, hooks: Mapping[str, HookFn]) -> Iterator[None]:
        """Within the block, this thread's forward passes call ``hooks`` (name → function);
        blocks nest, and leaving one detaches exactly what it attached, also on an error."""
        before = self.attached_here()
        merged = {name: list(fns) for name, fns in before.items()}
        for name, fn in hooks.items():
            merged.setdefault(name, []).append(fn)
        self._local.hooks = merged
        with self._lock:
            self.active += 1
        try:
            yield
        finally:
            self._local.hooks = before
            with self._lock:
                self.active -= 1

    def __deepcopy__(self, memo: dict) -> HookPoints:
        return HookPoints()  # a copied model starts with nothing attached (and a lock of its own)


class Hooked(nn.Module):
    """A module with hook points. ``GPT.__init__`` gives every such module of one model the same
    ``hook_points`` and its name prefix (``"blocks.0.attn."``)."""

    hook_points: HookPoints | None = None
    hook_prefix: str = ""

    def hook(self, name: str, value: torch.Tensor) -> torch.Tensor:
        """The value at hook point ``name`` (relative to this module): as computed, or replaced."""
        points = self.hook_points
        if points is None or not points.active:
            return value
        return points.run(self.hook_prefix + name, value)

    def hooks_want(self, *names: str) -> bool:
        points = self.hook_points
        return points is not None and points.active > 0 and points.wants(*(self.hook_prefix + n for n in names))
