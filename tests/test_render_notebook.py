"""`talkset render` and notebooks/explore.ipynb on the blackjournal root (issue 5, "Seeing it")."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from talkset.media import iter_frames, probe
from talkset.storage.catalog import connect

REPO = Path(__file__).resolve().parent.parent


def test_render_draws_boxes_skeleton_and_curves(blackjournal_root, tmp_path):
    from talkset.cli import main

    root, _ = blackjournal_root
    clip_id = connect(root).execute("SELECT clip_id FROM clips").fetchone()[0]
    out = tmp_path / "render.mp4"
    assert main(["render", clip_id, str(out), "--root", str(root), "--max-frames", "100"]) == 0
    p = probe(out)
    assert p.has_audio and p.width == 480 and p.height == 360 + 120
    assert 99 <= p.num_frames <= 101
    frames = [f for k, _, f in iter_frames(out) if k in (10, 60)]
    src = [f for k, _, f in iter_frames(root / f"clips/{clip_id}.mp4") if k in (10, 60)]
    for drawn, orig in zip(frames, src):
        top = drawn[:360].astype(int)
        changed = np.abs(top - orig.astype(int)).max(axis=2) > 60
        assert 0.002 < changed.mean() < 0.3  # boxes and skeletons drawn, the picture still there
        red = (drawn[:360, :, 2] > 200) & (drawn[:360, :, 0] < 60) & (drawn[:360, :, 1] < 60)
        blue = (drawn[:360, :, 0] > 200) & (drawn[:360, :, 2] < 60)
        assert red.sum() + blue.sum() > 100  # person boxes in red (speaking) or blue
        panel = drawn[360:]
        assert (panel.max(axis=2) > 100).mean() > 0.01  # the curves panel has content


def test_unknown_clip_is_a_clear_error(blackjournal_root, tmp_path):
    from talkset.render import render

    root, _ = blackjournal_root
    with pytest.raises(SystemExit, match="no clip 'nope'"):
        render(root, "nope", tmp_path / "x.mp4")


def test_notebook_executes(blackjournal_root, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    root, _ = blackjournal_root
    nb = nbformat.read(REPO / "notebooks" / "explore.ipynb", as_version=4)
    plot = tmp_path / "curves.png"
    os.environ.update(TALKSET_ROOT=str(root), TALKSET_PLOT=str(plot))
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "people: 2" in text
    assert plot.is_file() and plot.stat().st_size > 10_000
