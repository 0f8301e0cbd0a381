"""The pipeline graph (talkset/flows/graph.py): declared from the stages' reads/writes, run with
independent stages of one clip at the same time, and giving the same tables as a sequential run.

Real Prefect, real Ray, every annotation stage, on 4 s of the blackjournal two-shot (one shot,
two people)."""

from __future__ import annotations

import itertools

import pytest
from conftest import clip, cut

from talkset.config import CollectConfig
from talkset.flows.graph import clip_graph
from talkset.storage.catalog import connect


def test_graph_built_from_the_stage_declarations(tmp_path):
    from talkset.flows.collect import build_stages

    g = clip_graph(build_stages(CollectConfig(root=str(tmp_path), annotate=True), "t"))
    assert g.order == ("people", "clip", "pose", "faces", "speaking", "align", "write")
    assert g.needs["people"] == ()
    assert g.needs["clip"] == ("people",)
    assert g.needs["pose"] == ("people", "clip")  # person tracks + the clip's frames
    assert g.needs["faces"] == ("people", "clip")  # the clip (and the gate)
    assert g.needs["speaking"] == ("people", "clip", "faces")
    assert {"pose", "speaking"} <= set(g.needs["align"])
    assert set(g.needs["write"]) == {"people", "clip", "pose", "faces", "speaking", "align"}
    assert g.independent("pose", "faces") and g.independent("pose", "speaking")
    assert not g.independent("faces", "speaking") and not g.independent("pose", "align")
    off = clip_graph(build_stages(CollectConfig(root=str(tmp_path), annotate=False), "t"))
    assert off.order == ("people", "clip", "write") and off.needs["write"] == ("people", "clip")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, prefect_api):
    """The same 4 s two-shot collected with independent stages at the same time, then in sequence."""
    from talkset.flows.collect import collect

    d = tmp_path_factory.mktemp("graph")
    src = cut(clip("dvscripts_blackjournal.mp4"), d / "twoshot.mp4", 30.0, 4.0)
    out = {}
    for mode, parallel in (("parallel", True), ("sequential", False)):
        root = d / mode
        out[mode] = (root, collect(sources=[str(src)], root=str(root), config={"parallel_stages": parallel}))
    return out


def _intervals(summary, stage):
    return [(a, b) for _item, a, b in summary["stages"][stage]["intervals"]]


def test_pose_runs_alongside_faces_and_speaking(two_runs):
    _root, par = two_runs["parallel"]
    assert par["clips_kept"] == 1 and par["failures"] == 0
    (pose,) = _intervals(par, "pose")
    (faces,) = _intervals(par, "faces")
    (speaking,) = _intervals(par, "speaking")
    (clip_iv,) = _intervals(par, "clip")
    (align,) = _intervals(par, "align")
    # pose and faces both start after the clip is cut, and their actor intervals overlap
    assert pose[0] >= clip_iv[1] and faces[0] >= clip_iv[1]
    assert max(pose[0], faces[0]) < min(pose[1], faces[1]), (pose, faces)
    assert speaking[0] >= faces[1] and align[0] >= max(pose[1], speaking[1])
    # the sequential run: no two stages of the clip overlap
    _root, seq = two_runs["sequential"]
    ivs = sorted(iv for st in ("people", "clip", "pose", "faces", "speaking", "align", "write")
                 for iv in _intervals(seq, st))
    assert len(ivs) == 7
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(ivs))


def _rows(root, table, order):
    con = connect(root)
    cols = [c for (c,) in con.execute(f"SELECT column_name FROM (DESCRIBE {table})").fetchall()
            if c not in ("run_id", "created_at", "source_path")]
    return cols, con.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {order}").fetchall()


@pytest.mark.parametrize("table,order", [("clips", "clip_id"), ("shots", "shot_idx"),
                                         ("frames", "clip_id, track_id, frame_idx")])
def test_tables_equal_a_sequential_run(two_runs, table, order):
    par_cols, par = _rows(two_runs["parallel"][0], table, order)
    seq_cols, seq = _rows(two_runs["sequential"][0], table, order)
    assert par_cols == seq_cols
    assert len(par) == len(seq) > 0
    if table == "frames":
        assert len(par) >= 2 * 100  # two people, 100 frames
        i = par_cols.index("speaking_score")
        assert sum(r[i] is not None for r in par) > 0  # annotation really ran
    assert par == seq
