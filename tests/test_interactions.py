"""The ``turns`` / ``interactions`` views (talkset.interactions): constructed score curves with
known answers, then the real blackjournal demo root."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from talkset.interactions import (
    INTERACTIONS_COLUMNS,
    TURNS_COLUMNS,
    InteractionConfig,
    create_views,
)

FPS = 25.0


def _con(clips: dict[str, dict[int, np.ndarray]], cfg: InteractionConfig | None = None, fps: float = FPS):
    """A DuckDB connection with ``frames`` / ``clips`` made of ``{clip_id: {track_id: scores}}``
    (NaN = no face, null in the table) and the interaction views over them."""
    f_rows, c_rows = [], []
    for clip_id, tracks in clips.items():
        n = max(len(s) for s in tracks.values())
        c_rows.append({"clip_id": clip_id, "source": "src", "fps": fps, "num_frames": n, "duration_s": n / fps})
        for tid, scores in tracks.items():
            for i, s in enumerate(scores):
                f_rows.append({"clip_id": clip_id, "track_id": tid, "frame_idx": i, "time_s": i / fps,
                               "speaking_score": None if np.isnan(s) else float(s)})
    schema = pa.schema([("clip_id", pa.string()), ("track_id", pa.int32()), ("frame_idx", pa.int32()),
                        ("time_s", pa.float64()), ("speaking_score", pa.float32())])
    con = duckdb.connect()
    con.register("frames", pa.Table.from_pylist(f_rows, schema=schema))
    con.register("clips", pa.Table.from_pylist(c_rows, schema=pa.schema(
        [("clip_id", pa.string()), ("source", pa.string()), ("fps", pa.float32()), ("num_frames", pa.int32()),
         ("duration_s", pa.float64())])))
    create_views(con, cfg)
    return con


def _rows(con, sql):
    cur = con.execute(sql)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def _curve(n: int, spans: list[tuple[int, int, float]], base: float = -0.8) -> np.ndarray:
    """``n`` frames at ``base`` with ``value`` on each frame span [a, b)."""
    x = np.full(n, base, np.float64)
    for a, b, v in spans:
        x[a:b] = v
    return x


def test_hysteresis_bridging_and_min_length():
    # person 0: 0.5 on 10..60, dips to 0.05 (between off and on) on 30..35 -> one segment;
    #           a bump to 0.1 on 80..100 never reaches on -> no speech;
    #           0.6 on 120..140, 5 silent frames (0.2 s <= bridge_s 0.3), 0.6 on 145..170 -> one turn;
    #           0.9 on 200..203 (0.12 s < min_turn_s) -> dropped
    s = _curve(250, [(10, 60, 0.5), (30, 35, 0.05), (80, 100, 0.1), (120, 140, 0.6), (145, 170, 0.6),
                     (200, 203, 0.9)])
    con = _con({"c": {0: s}})
    turns = _rows(con, "SELECT * FROM turns ORDER BY turn_idx")
    assert [(t["start_frame"], t["end_frame"]) for t in turns] == [(10, 60), (120, 170)]
    assert [t["turn_idx"] for t in turns] == [0, 1]
    assert turns[0]["start_s"] == pytest.approx(0.4) and turns[0]["end_s"] == pytest.approx(2.4)
    assert turns[0]["duration_s"] == pytest.approx(2.0)
    # mean over every frame of the turn, the dip and the bridged pause included
    assert turns[0]["mean_score"] == pytest.approx((45 * 0.5 + 5 * 0.05) / 50, abs=1e-6)
    assert turns[1]["mean_score"] == pytest.approx((45 * 0.6 + 5 * -0.8) / 50, abs=1e-6)
    assert tuple(_rows(con, "SELECT * FROM turns LIMIT 1")[0]) == TURNS_COLUMNS
    # a gap longer than bridge_s splits; a lower on threshold finds the bump
    con = _con({"c": {0: s}}, InteractionConfig(bridge_s=0.1, on=0.1))
    turns = _rows(con, "SELECT start_frame, end_frame FROM turns ORDER BY turn_idx")
    assert [(t["start_frame"], t["end_frame"]) for t in turns] == [(10, 60), (80, 100), (120, 140), (145, 170)]


def test_null_scores_are_silent_and_break_segments():
    s = _curve(100, [(10, 40, 0.7), (60, 90, 0.7)])
    s[20:30] = np.nan  # no face for 0.4 s in the middle of the first stretch
    con = _con({"c": {0: s}})
    turns = _rows(con, "SELECT start_frame, end_frame, mean_score FROM turns ORDER BY start_frame")
    assert [(t["start_frame"], t["end_frame"]) for t in turns] == [(10, 20), (30, 40), (60, 90)]


def _reference_turns(frames: dict[int, float], cfg: InteractionConfig, fps: float = FPS) -> list[tuple]:
    """The module docstring's turn rules in plain Python, for one person: ``frames`` maps a frame index
    (rows that exist) to its score (NaN = null = -1). Returns (start_frame, end_frame, mean_score)."""
    idx = sorted(frames)
    score = {i: -1.0 if np.isnan(frames[i]) else frames[i] for i in idx}
    segs, run = [], []
    for i in idx:  # runs of consecutive existing frames with score > off, kept when one reaches on
        if score[i] > cfg.off and run and i == run[-1] + 1:
            run.append(i)
            continue
        if run and max(score[j] for j in run) >= cfg.on:
            segs.append((run[0], run[-1] + 1))
        run = [i] if score[i] > cfg.off else []
    if run and max(score[j] for j in run) >= cfg.on:
        segs.append((run[0], run[-1] + 1))
    turns = []
    for a, b in segs:  # bridging
        if turns and (a - turns[-1][1]) / fps <= cfg.bridge_s + 1e-9:
            turns[-1] = (turns[-1][0], b)
        else:
            turns.append((a, b))
    out = []
    for a, b in turns:
        if (b - a) / fps >= cfg.min_turn_s - 1e-9:
            rows = [score[i] for i in idx if a <= i < b]
            out.append((a, b, sum(rows) / len(rows)))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_turns_match_the_rules_with_missing_rows_and_nulls(seed):
    """Random score walks with null scores and missing frame rows (a person out of the frame): the
    view's turns equal the plain-Python rules (the view finds islands among frames above off and takes
    the mean score with a join, not running sums over every frame)."""
    rng = np.random.default_rng(seed)
    cfg = InteractionConfig(on=0.3, off=0.0, bridge_s=0.2, min_turn_s=0.12)
    tracks, expected = {}, {}
    for tid in range(3):
        walk = np.zeros(600)  # an AR(1) walk that crosses 0 often
        for i in range(1, 600):
            walk[i] = 0.93 * walk[i - 1] + rng.normal(0, 0.2)
        walk = np.clip(walk, -1, 1)
        walk[rng.random(600) < 0.03] = np.nan
        keep = np.flatnonzero(rng.random(600) > 0.04)  # ~4 % of rows missing
        tracks[tid] = {int(i): float(walk[i]) for i in keep}
        expected[tid] = _reference_turns(tracks[tid], cfg)
    rows = [{"clip_id": "c", "track_id": tid, "frame_idx": i, "time_s": i / FPS,
             "speaking_score": None if np.isnan(v) else v} for tid, fr in tracks.items() for i, v in fr.items()]
    con = duckdb.connect()
    con.register("frames", pa.Table.from_pylist(rows, schema=pa.schema(
        [("clip_id", pa.string()), ("track_id", pa.int32()), ("frame_idx", pa.int32()), ("time_s", pa.float64()),
         ("speaking_score", pa.float64())])))
    con.register("clips", pa.Table.from_pylist([{"clip_id": "c", "source": "src", "fps": FPS, "num_frames": 600,
                                                 "duration_s": 600 / FPS}]))
    create_views(con, cfg)
    got = {tid: [(a, b, m) for t, a, b, m in con.execute(
        "SELECT track_id, start_frame, end_frame, mean_score FROM turns ORDER BY start_frame").fetchall() if t == tid]
        for tid in tracks}
    assert sum(len(v) for v in expected.values()) >= 20
    for tid in tracks:
        assert [(a, b) for a, b, _ in got[tid]] == [(a, b) for a, b, _ in expected[tid]], tid
        assert [m for *_, m in got[tid]] == pytest.approx([m for *_, m in expected[tid]], abs=1e-9)


def test_turn_taking_switches_gaps_overlaps_and_shares():
    n = 500  # 20 s
    a = _curve(n, [(0, 100, 0.8), (200, 300, 0.8)])  # A: 0-4 s, 8-12 s
    b = _curve(n, [(110, 190, 0.8), (290, 400, 0.8)])  # B: 4.4-7.6 s, 11.6-16 s
    con = _con({"c": {0: a, 1: b}})
    r = _rows(con, "SELECT * FROM interactions")[0]
    assert tuple(r) == INTERACTIONS_COLUMNS
    assert r["people"] == 2 and r["speakers"] == 2 and r["turn_count"] == 4
    assert r["turns_per_min"] == pytest.approx(4 * 60 / 20)
    assert r["switches"] == 3
    assert r["mean_gap_s"] == pytest.approx((0.4 + 0.4) / 2)  # A->B 10 frames, B->A 10 frames
    assert r["mean_overlap_s"] == pytest.approx(0.4)  # A 200-300, B from 290
    assert r["share_2plus"] == pytest.approx(10 / n)
    assert r["share_1"] == pytest.approx((100 + 80 + 100 + 110 - 2 * 10) / n)
    assert r["share_0"] == pytest.approx(1 - r["share_1"] - r["share_2plus"])
    assert r["longest_monologue_s"] == pytest.approx(110 / FPS)
    assert r["backchannels"] == 0
    assert r["main_speaker"] == 0 and r["main_speaker_share"] == pytest.approx(200 / 390)
    assert r["pattern"] == "turn-taking"


def test_talking_listening_with_backchannels():
    n = 750  # 30 s
    a = _curve(n, [(0, 700, 0.9)])  # a 28 s monologue
    b = _curve(n, [(100, 115, 0.5), (300, 320, 0.5), (710, 740, 0.5)])  # two 0.6 / 0.8 s "mm-hm", then 1.2 s
    con = _con({"c": {0: a, 1: b}})
    turns = _rows(con, "SELECT track_id, start_frame, backchannel FROM turns ORDER BY turn_idx")
    assert [(t["track_id"], t["start_frame"], t["backchannel"]) for t in turns] == [
        (0, 0, False), (1, 100, True), (1, 300, True), (1, 710, False)]
    r = _rows(con, "SELECT * FROM interactions")[0]
    assert r["backchannels"] == 2 and r["turn_count"] == 2 and r["speakers"] == 2
    assert r["switches"] == 1 and r["mean_gap_s"] == pytest.approx(0.4) and r["mean_overlap_s"] is None
    assert r["longest_monologue_s"] == pytest.approx(28.0)
    assert r["main_speaker"] == 0 and r["main_speaker_share"] == pytest.approx(700 / 765)
    assert r["share_2plus"] == pytest.approx(35 / n)
    assert r["pattern"] == "talking-listening"


def test_over_talking_and_silent_clips():
    n = 250
    a = _curve(n, [(0, 200, 0.8)])
    b = _curve(n, [(50, 250, 0.8)])  # both speak 2-8 s: 150 of 250 speech frames overlap
    quiet = {0: _curve(n, []), 1: _curve(n, [(10, 30, 0.1)])}  # never reaches on
    con = _con({"talk": {0: a, 1: b}, "quiet": quiet})
    r = {x["clip_id"]: x for x in _rows(con, "SELECT * FROM interactions")}
    assert r["talk"]["pattern"] == "over-talking"
    assert r["talk"]["share_2plus"] == pytest.approx(150 / 250)
    assert r["talk"]["switches"] == 1 and r["talk"]["mean_overlap_s"] == pytest.approx(150 / FPS)
    q = r["quiet"]
    assert (q["pattern"], q["turn_count"], q["speakers"], q["switches"], q["people"]) == ("silent", 0, 0, 0, 2)
    assert q["share_0"] == pytest.approx(1.0) and q["share_2plus"] == 0
    # the query
    hits = con.execute("SELECT clip_id FROM interactions WHERE turns_per_min >= 3 AND share_2plus >= 0.10").fetchall()
    assert hits == [("talk",)]


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="off <= on"):
        InteractionConfig(on=0.0, off=0.5).validate()
    with pytest.raises(ValueError, match="finite"):
        InteractionConfig(bridge_s=float("nan")).validate()
    with pytest.raises(ValueError, match="unknown InteractionConfig keys"):
        InteractionConfig.from_dict({"onn": 0.3})


def _turns_numpy(scores: np.ndarray, cfg: InteractionConfig, fps: float) -> list[tuple[int, int]]:
    """An independent reading of one person's curve: hysteresis, bridging, minimum length."""
    x = np.where(np.isnan(scores), -1.0, scores)
    above = x > cfg.off
    segs, i = [], 0
    while i < len(x):
        if above[i]:
            j = i
            while j < len(x) and above[j]:
                j += 1
            if x[i:j].max() >= cfg.on:
                segs.append([i, j])
            i = j
        else:
            i += 1
    merged = []
    for a, b in segs:
        if merged and (a - merged[-1][1]) / fps <= cfg.bridge_s + 1e-9:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged if (b - a) / fps >= cfg.min_turn_s - 1e-9]


def test_blackjournal_turns_and_interactions(blackjournal_root):
    from talkset.storage.catalog import connect

    root, _ = blackjournal_root
    con = connect(root)
    (clip_id, fps, n), = con.execute("SELECT clip_id, fps, num_frames FROM clips").fetchall()
    cfg = InteractionConfig()
    curves = {}
    for tid, fi, s in con.execute("SELECT track_id, frame_idx, speaking_score FROM frames ORDER BY ALL").fetchall():
        curves.setdefault(tid, np.full(n, np.nan))[fi] = np.nan if s is None else s
    turns = _rows(con, "SELECT * FROM turns ORDER BY turn_idx")
    for tid, x in curves.items():
        mine = [(t["start_frame"], t["end_frame"]) for t in turns if t["track_id"] == tid]
        assert mine == _turns_numpy(x, cfg, fps), f"track {tid}"
    in_turn = np.zeros((len(curves), n), bool)
    for t in turns:
        in_turn[sorted(curves).index(t["track_id"]), t["start_frame"]:t["end_frame"]] = True
    k = in_turn.sum(0)
    r = _rows(con, "SELECT * FROM interactions")[0]
    assert r["clip_id"] == clip_id and r["people"] == 2
    # read off the curves (README demo): the guest (track 1) talks in ~14 turns, the interviewer seen
    # from behind scores > 0 once, 46.7-50.5 s, inside the guest's 40.9-50.6 s turn (the 6 % overlap)
    guest = [t for t in turns if t["track_id"] == 1]
    host = [t for t in turns if t["track_id"] == 0]
    assert 10 <= len(guest) <= 18 and len(host) == 1
    assert host[0]["start_s"] == pytest.approx(46.7, abs=0.5) and host[0]["duration_s"] == pytest.approx(3.8, abs=0.5)
    assert any(g["start_frame"] <= host[0]["start_frame"] and g["end_frame"] >= host[0]["end_frame"] for g in guest)
    assert r["share_2plus"] == pytest.approx(0.062, abs=0.01)
    assert r["main_speaker"] == 1 and r["main_speaker_share"] > 0.9 and r["speakers"] == 2
    assert r["switches"] == 2 and r["mean_overlap_s"] == pytest.approx(host[0]["duration_s"], abs=0.1)
    assert r["pattern"] == "talking-listening"
    assert r["share_2plus"] == pytest.approx((k >= 2).mean()) and r["share_1"] == pytest.approx((k == 1).mean())
