"""Sub-commands that live beside their feature modules: each module exposes ``register(sub)``."""

from __future__ import annotations

import importlib

MODULES = ("talkset.server", "talkset.render", "talkset.train_cli")


def register(sub) -> None:
    for name in MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # feature not installed in this checkout
                continue
            raise
        mod.register(sub)
