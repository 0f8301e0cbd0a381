"""MIT's clip rules (issue 11 §3): trimming a shot to the spans where all its people are present
(one clip per span), the face-size rules, and the ``mit`` preset.

Span and face-size rules are checked on constructed track data; the flow on real footage
(``dvscripts_blackjournal.mp4``), with these labels:

- ``hide.mp4``: 9.5 s of the blackjournal two-shot (source 14-23.5 s: host left, guest right, one
  static shot). A black 230x320 px box over the guest (x 250-480, y 40-360 of 480x360) fades in
  over 4.0-4.6 s and out over 5.2-5.8 s (ffmpeg ``fade=alpha``; a hard box is a cut for
  PySceneDetect, measured: it split the shot at both box edges). Measured with the people stage:
  the guest's track misses 17 frames and the host's 21 (his box reaches over the guest's side with
  his papers; under the box YOLO gives him a smaller box that ByteTrack tracks under a new id), both
  keep their ids, so with gaps > 12 frames both are present on [0, 113) and [133, 237): two clips.
- ``small.mp4``: 3.6 s of the same two-shot (source 30-33.6 s): at 480x360 the faces YuNet finds
  average well under MIT's 64 x 64 px, so the ``min_face_area`` rule rejects the clip.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import clip

from talkset.config import CollectConfig, preset
from talkset.items import Clip, PersonTrack, Shot, Source, clip_id_for
from talkset.media import run_ffmpeg
from talkset.stages.align import face_size_reason
from talkset.stages.people import clips_for_spans, gap_frames, min_frames, present_spans
from talkset.storage.catalog import connect


def _frames(*runs: tuple[int, int], drop: tuple[int, ...] = ()) -> np.ndarray:
    f = np.concatenate([np.arange(a, b) for a, b in runs])
    return f[~np.isin(f, drop)].astype(np.int32)


# -- spans on constructed tracks -------------------------------------------------------------------

def test_gaps_up_to_max_gap_are_filled():
    a = _frames((0, 200), drop=tuple(range(50, 61)))  # 11 missing frames: difference 12
    b = _frames((0, 200))
    assert present_spans([a, b], 200, max_gap=12, min_len=75) == [(0, 200)]
    # the same gap with a smaller allowance splits the shot: [0, 50) is too short, [61, 200) kept
    assert present_spans([a, b], 200, max_gap=11, min_len=75) == [(61, 200)]


def test_person_leaving_mid_shot_gives_two_clips_one_clip_or_none():
    host = _frames((0, 300))
    guest_away_mid = _frames((0, 120), (180, 300))  # away 120-179 (2.4 s)
    assert present_spans([host, guest_away_mid], 300, max_gap=12, min_len=75) == [(0, 120), (180, 300)]
    guest_arrives = _frames((100, 300))  # enters late: one span
    assert present_spans([host, guest_arrives], 300, max_gap=12, min_len=75) == [(100, 300)]
    guest_brief = _frames((0, 60), (250, 300))  # no common span of 75 frames
    assert present_spans([host, guest_brief], 300, max_gap=12, min_len=75) == []
    assert present_spans([], 300, max_gap=12, min_len=75) == []


def test_mit_thresholds_in_frames():
    cfg = preset("mit")
    assert gap_frames(cfg["presence_gap_s"], cfg["clip_fps"]) == 12  # TalkNet numFailedDet
    assert min_frames(cfg["min_shot_s"], cfg["clip_fps"]) == 126  # end - start > 125
    assert min_frames(3.0, 25.0) == 75 and gap_frames(0.5, 25.0) == 12
    mit = CollectConfig.from_dict(cfg)
    assert mit.trim_to_present and mit.min_face_area == 4096 and mit.min_face_area_ratio == 0.5
    assert not CollectConfig().trim_to_present and CollectConfig().min_face_area is None


def _track(tid: int, frames: np.ndarray) -> PersonTrack:
    n = len(frames)
    boxes = np.stack([frames, frames + 1, frames + 10, frames + 20], axis=1).astype(np.float32)
    return PersonTrack(tid, frames, boxes, np.full(n, 0.9, np.float32), np.zeros((n, 17, 3), np.float32))


def test_clips_for_spans_cut_and_reindex_tracks():
    src = Source(url="x.mp4", source_id="x-00000000")
    shot = Shot("x-00000000", 3, 90, 390, 10.0, 22.0, kept=True, num_people=2)
    tracks = [_track(0, _frames((0, 300))), _track(1, _frames((0, 120), (180, 300)))]
    item = Clip(source=src, shot=shot, clip_id=clip_id_for(src.source_id, 3), clip_fps=25.0, person_tracks=tracks,
                spans=[(0, 120), (180, 300)])
    a, b = clips_for_spans(item)
    assert (a.clip_id, b.clip_id) == ("x-00000000-s0003", "x-00000000-s0003-p1")
    assert (a.start_s, a.end_s) == (10.0, 14.8) and (b.start_s, b.end_s) == (17.2, 22.0)
    assert [len(t) for t in b.person_tracks] == [120, 120]
    assert b.person_tracks[1].frame_idx[0] == 0 and b.person_tracks[1].frame_idx[-1] == 119
    assert b.person_tracks[0].boxes[0, 0] == 180  # the box of shot frame 180 is clip frame 0
    whole = clips_for_spans(Clip(source=src, shot=shot, clip_id="x-00000000-s0003", clip_fps=25.0))
    assert len(whole) == 1 and (whole[0].start_s, whole[0].end_s) == (10.0, 22.0)


def test_source_complete_needs_every_clip_of_a_shot(tmp_path):
    from talkset.storage.root import DatasetRoot

    root = DatasetRoot(tmp_path)
    root.make_dirs()
    sid = "x-00000000"
    ids = [clip_id_for(sid, 0), clip_id_for(sid, 0, 1)]
    root.write_shard("shots", sid, "shots", [{"shot_idx": 0, "kept": True, "reason": "", "clip_id": ids[0],
                                              "clip_ids": ids, "rejected": []}])
    root.write_shard("clips", sid, ids[0], [{"clip_id": ids[0], "shot_idx": 0, "num_people": 2}])
    assert not root.source_complete(sid)  # the second clip of the shot is missing
    root.write_shard("clips", sid, ids[1], [{"clip_id": ids[1], "shot_idx": 0, "num_people": 2}])
    assert root.source_complete(sid)
    assert root.shot_rows(sid)[0]["clip_ids"] == ids


# -- face-size rules on constructed columns --------------------------------------------------------

def _faces(*sides: float, n: int = 10) -> tuple[list[PersonTrack], dict]:
    tracks, cols = [], {}
    for tid, side in enumerate(sides):
        tracks.append(_track(tid, _frames((0, n))))
        fb = np.tile(np.array([0, 0, side, side], np.float32), (n, 1))
        fb[::3] = np.nan  # frames without a face do not count
        cols[tid] = {"face_box": fb}
    return tracks, cols


def test_face_size_rules():
    assert face_size_reason(*_faces(70, 80), 4096, 0.5) is None
    assert face_size_reason(*_faces(60, 80), 4096, 0.5) == "face_area=3600<4096"
    assert face_size_reason(*_faces(70, 100), 4096, 0.5) == "face_ratio=0.49"  # 4900 / 10000
    assert face_size_reason(*_faces(70, 100), None, None) is None
    tracks, cols = _faces(70, 80)
    cols[1]["face_box"][:] = np.nan
    assert face_size_reason(tracks, cols, 4096, None) == "no_face:track=1"


# -- the flow on real footage ----------------------------------------------------------------------

BJ = "dvscripts_blackjournal.mp4"
#: a black box over the guest, faded in over 4.0-4.6 s and out over 5.2-5.8 s (no cut for the detector)
HIDE_FILTER = ("[1:v]format=yuva420p,fade=t=in:st=4.0:d=0.6:alpha=1,fade=t=out:st=5.2:d=0.6:alpha=1[box];"
               "[0:v][box]overlay=x=250:y=40:shortest=1")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("cliprules")
    hide, small = d / "hide.mp4", d / "small.mp4"
    run_ffmpeg(["-ss", "14", "-i", str(clip(BJ)), "-f", "lavfi", "-i", "color=black:s=230x320:r=30000/1001:d=9.5",
                "-filter_complex", HIDE_FILTER,
                "-t", "9.5", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-c:a", "aac", "-ar", "44100",
                str(hide)], "hide fixture")
    run_ffmpeg(["-ss", "30", "-i", str(clip(BJ)), "-t", "3.6", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18",
                "-c:a", "aac", "-ar", "44100", str(small)], "small-face fixture")
    return {"hide": hide, "small": small}


def _sql(root, q):
    return connect(root).execute(q).fetchall()


@pytest.mark.usefixtures("prefect_api")
def test_one_shot_gives_two_clips_and_resume_writes_nothing(tmp_path, inputs):
    from talkset.flows.collect import collect

    cfg = {"annotate": False, "trim_to_present": True}
    first = collect(sources=[str(inputs["hide"])], root=str(tmp_path), config=cfg)
    assert first["clips_kept"] == 2 and first["failures"] == 0
    sid = first["per_source"][0]["source_id"]
    ids = [clip_id_for(sid, 0), clip_id_for(sid, 0, 1)]
    shots = _sql(tmp_path, "SELECT shot_idx, kept, reason, clip_id, clip_ids, rejected FROM shots")
    assert shots == [(0, True, "", ids[0], ids, [])]
    clips = _sql(tmp_path, "SELECT clip_id, start_s, end_s, num_frames FROM clips ORDER BY start_s")
    assert [c[0] for c in clips] == ids
    (_, s0, e0, n0), (_, s1, e1, n1) = clips
    assert s0 == 0.0 and e0 <= s1 - 0.4  # the ~0.8 s hidden in between is in neither clip
    assert n0 >= 75 and n1 >= 75 and n0 + n1 < 237 - 10
    assert e1 == _sql(tmp_path, "SELECT end_s FROM shots")[0][0]  # the second span runs to the shot's end
    per_track = _sql(tmp_path, "SELECT clip_id, track_id, min(frame_idx), max(frame_idx), count(*) FROM frames GROUP BY ALL")
    n_of = {c[0]: c[3] for c in clips}
    assert len(per_track) == 4  # both people in both clips, frames re-indexed from 0
    for cid, _tid, lo, hi, rows in per_track:
        assert lo == 0 and hi == n_of[cid] - 1 and rows >= 0.9 * n_of[cid]
    shards = sorted((tmp_path / "tables" / "clips").rglob("*.parquet"))
    mtimes = [p.stat().st_mtime_ns for p in shards]
    frames_before = _sql(tmp_path, "SELECT count(*) FROM frames")
    # a run killed before the source's shots row: the people stage runs again, both clips are skipped
    next((tmp_path / "tables" / "shots").rglob("shots.parquet")).unlink()
    again = collect(sources=[str(inputs["hide"])], root=str(tmp_path), config=cfg)
    assert again["clips_kept"] == 2 and again["clips_resumed"] == 2 and again["sources_skipped"] == 0
    assert [p.stat().st_mtime_ns for p in sorted((tmp_path / "tables" / "clips").rglob("*.parquet"))] == mtimes
    assert _sql(tmp_path, "SELECT count(*) FROM frames") == frames_before
    assert _sql(tmp_path, "SELECT clip_ids FROM shots") == [(ids,)]
    assert sorted(p.name for p in (tmp_path / "clips").iterdir()) == sorted(f"{c}.{e}" for c in ids for e in ("mp4", "wav"))


@pytest.mark.usefixtures("prefect_api")
def test_small_faces_rejected_without_a_failure(tmp_path, inputs):
    from talkset.flows.collect import collect

    summary = collect(sources=[str(inputs["small"])], root=str(tmp_path),
                      config={"min_face_area": 4096.0, "min_face_area_ratio": 0.5})
    sid = summary["per_source"][0]["source_id"]
    (kept, reason, clip_id, clip_ids, rejected), = _sql(tmp_path, "SELECT kept, reason, clip_id, clip_ids, rejected FROM shots")
    print("small-face shot:", reason)
    assert not kept and clip_id is None and clip_ids == []
    assert reason.startswith(("face_area=", "no_face:")) and rejected == [f"{clip_id_for(sid, 0)}: {reason}"]
    assert _sql(tmp_path, "SELECT count(*) FROM clips") == [(0,)] and summary["failures"] == 0
    assert _sql(tmp_path, "SELECT count(*) FROM failures") == [(0,)]
    assert not any((tmp_path / "clips").iterdir())  # the cut media of the rejected clip are removed
