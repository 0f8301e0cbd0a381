"""Issue 4/5 acceptance on the README's real clip: dvscripts_blackjournal.mp4 (73 s; a 1-person
close-up, a hard cut at 11.378 s = source frame 341, then a static 2-person interview shot)."""

from __future__ import annotations

import numpy as np
import pytest

from talkset.storage.catalog import connect


@pytest.fixture(scope="module")
def con(blackjournal_root):
    root, _ = blackjournal_root
    return connect(root)


def test_shots_cut_and_filter(con, blackjournal_root):
    _, summary = blackjournal_root
    shots = con.execute("SELECT shot_idx, start_frame, end_frame, start_s, kept, reason, num_people FROM shots ORDER BY shot_idx").fetchall()
    assert len(shots) == 2, shots
    (i0, s0, e0, _, k0, r0, _), (i1, s1, _, t1, k1, r1, n1) = shots
    assert abs(e0 - 341) <= 1 and abs(s1 - 341) <= 1  # the cut within one frame
    assert t1 == pytest.approx(11.378, abs=1 / 29.97)
    assert (k0, r0) == (False, "people=1")  # the host close-up
    assert (k1, r1, n1) == (True, "", 2)
    assert summary["clips_kept"] == 1 and summary["failures"] == 0


def test_one_two_person_clip(con):
    rows = con.execute("SELECT clip_id, fps, num_frames, width, height, num_people, start_s, end_s FROM clips").fetchall()
    assert len(rows) == 1
    clip_id, fps, n, w, h, people, start, end = rows[0]
    assert (fps, w, h, people) == (25, 480, 360, 2)
    assert n == pytest.approx((end - start) * 25, abs=1)
    assert 1530 <= n <= 1545  # 61.6 s at 25 fps


def test_two_tracks_with_plausible_boxes(con):
    n = con.execute("SELECT num_frames FROM clips").fetchone()[0]
    per = con.execute(
        "SELECT track_id, count(*), avg((box[1]+box[3])/2), avg(box[3]-box[1]), avg(box[4]-box[2]), "
        "min(box[1]), max(box[3]), min(box[2]), max(box[4]) FROM frames GROUP BY track_id ORDER BY 3"
    ).fetchall()
    assert len(per) == 2
    (_, c_left, x_left, w_left, h_left, *_), (_, c_right, x_right, w_right, h_right, *_) = per
    assert c_left >= 0.9 * n and c_right >= 0.9 * n  # both people over (nearly) the whole clip
    assert x_left < 240 < x_right  # interviewer on the left, guest on the right
    for _, _, _, w, h, x1, x2, y1, y2 in per:
        assert 60 < w < 300 and 120 < h <= 360  # seated people in a 480x360 frame
        assert x1 >= -1 and x2 <= 481 and y1 >= -1 and y2 <= 361
    dup = con.execute("SELECT count(*) FROM (SELECT track_id, frame_idx FROM frames GROUP BY ALL HAVING count(*) > 1)").fetchone()[0]
    assert dup == 0


def test_wholebody_keypoints_on_both_people(con):
    rows = con.execute("SELECT track_id, box, keypoints, keypoints_59 FROM frames WHERE frame_idx % 25 = 0").fetchall()
    assert rows
    inside = {}
    for tid, box, kp, kp59 in rows:
        kp = np.asarray(kp, np.float32)
        assert kp.shape == (133, 3) and np.asarray(kp59).shape == (59, 3)
        ok = kp[:, 2] >= 0.4
        if ok.sum() == 0:
            continue
        x1, y1, x2, y2 = box
        pad = 0.15 * (x2 - x1)
        within = (kp[ok, 0] >= x1 - pad) & (kp[ok, 0] <= x2 + pad) & (kp[ok, 1] >= y1 - pad) & (kp[ok, 1] <= y2 + pad)
        inside.setdefault(tid, []).append(within.mean())
    assert len(inside) == 2
    for tid, fr in inside.items():
        assert np.mean(fr) > 0.9, (tid, np.mean(fr))


def test_speaking_scores_in_range_and_sql(con):
    lo, hi, n_scored = con.execute("SELECT min(speaking_score), max(speaking_score), count(speaking_score) FROM frames").fetchone()
    assert n_scored > 0 and -1 <= lo <= hi <= 1
    # README queries: share of frames where two people speak at once; speaking time per person
    both = con.execute(
        "SELECT avg((n_speaking >= 2)::INT) FROM (SELECT clip_id, frame_idx, count(*) FILTER (WHERE speaking_score > 0) AS n_speaking FROM frames GROUP BY ALL)"
    ).fetchone()[0]
    assert 0 <= both <= 0.5
    per_person = con.execute(
        "SELECT track_id, count(*) FILTER (WHERE speaking_score > 0) / 25.0 AS seconds FROM frames GROUP BY track_id ORDER BY 1"
    ).fetchall()
    assert len(per_person) == 2 and sum(s for _, s in per_person) > 5  # somebody talks in a 61 s interview
