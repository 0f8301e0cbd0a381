"""Sub-commands added by later stages of the project (render, train, evaluate, server, deploy)."""

from __future__ import annotations


def register(sub) -> None:  # noqa: ARG001 - filled as commands land
    return None
