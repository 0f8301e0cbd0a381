"""Editing artifacts and occlusion per shot (issue 11 §6): layout, overlay share, occlusion share.

Cases are 4 s cuts built with ffmpeg from the shared clips (480x360 blackjournal two-shot from
20 s, padded to 480x400 with a 40 px bottom band as a news channel's L-bar):
- ``bj_clean``: the padded two-shot, nothing drawn;
- ``bj_overlays``: the same with three overlays drawn with ``drawbox`` + ``drawtext`` (DejaVu Sans
  Bold), all outside the people: a running timer (hundredths of a second) in a 64x34 box top right,
  a caption band 300x34 top left whose text changes at 1.2 s and 2.5 s, and a ticker scrolling
  160 px/s in a 480x32 band in the bottom L-bar. Drawn area: 27 736 px of 192 000 = 0.1445;
- ``bj_occluded``: the two-shot with the woman pasted again (crop, scaled 1.16x, black backdrop
  keyed out) 140 px to the left of and lower than herself, in front of the man.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import clip, shot_task

from talkset.items import Clip, PersonTrack
from talkset.media import run_ffmpeg
from talkset.stages import overlay
from talkset.stages.people import PeopleStage

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
OUT = ["-r", "25", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "20", "-pix_fmt", "yuv420p", "-c:a", "aac"]
BJ_START = 20.0
FRAME_AREA = 480 * 400
DRAWN_AREA = 480 * 32 + 64 * 34 + 300 * 34  # ticker band + timer box + caption box, px
TICKER = "BREAKING NEWS - markets close higher - rain tomorrow - the interview continues at nine"
CAPTIONS = ((0.0, 1.2, "Good evening and welcome"), (1.2, 2.5, "to Black Journal tonight"),
            (2.5, 9.0, "our guest is with us now"))


def overlays_filter() -> str:
    """drawbox + drawtext filters of ``bj_overlays`` (module docstring)."""
    timer = ("drawbox=x=408:y=6:w=64:h=34:color=black:t=fill,"
             f"drawtext=fontfile={FONT}:text='%{{eif\\:t*100\\:d}}':fontsize=26:fontcolor=white:x=412:y=10")
    ticker = ("drawbox=x=0:y=364:w=480:h=32:color=navy:t=fill,"
              f"drawtext=fontfile={FONT}:text='{TICKER}':fontsize=22:fontcolor=yellow:x=w-mod(t*160\\,w+tw):y=369")
    caps = ",".join(
        f"drawtext=fontfile={FONT}:text='{txt}':fontsize=20:fontcolor=white:x=14:y=13:enable='between(t,{a},{b})'"
        for a, b, txt in CAPTIONS)
    caption = f"drawbox=x=8:y=6:w=300:h=34:color=0x303030:t=fill,{caps}"
    return f"{timer},{caption},{ticker}"


def build(dst: Path, kind: str) -> Path:
    src = clip("dvscripts_blackjournal.mp4")
    pad = "pad=480:400:0:0:black"
    if kind == "clean":
        fc = f"[0:v]{pad}"
    elif kind == "overlays":
        fc = f"[0:v]{pad},{overlays_filter()}"
    elif kind == "occluded":
        fc = ("[0:v]split[a][b];[b]crop=190:320:262:40,scale=150:250,colorkey=0x000000:0.12:0.05[w];"
              "[a][w]overlay=x=100:y=110")
    else:
        raise ValueError(kind)
    run_ffmpeg(["-ss", str(BJ_START), "-i", str(src), "-t", "4", "-filter_complex", f"{fc}[v]", "-map", "[v]",
                "-map", "0:a", *OUT, str(dst)], kind)
    return dst


def task_for(path: Path, start_s: float = 0.0, end_s: float = 4.0) -> Clip:
    return shot_task(path, start_s, end_s)


@pytest.fixture(scope="module")
def stage(people_stage) -> PeopleStage:
    return people_stage


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cliplabels")
    return {k: build(d / f"bj_{k}.mp4", k) for k in ("clean", "overlays", "occluded")}


def sparse(stage: PeopleStage, path: Path, start_s: float = 0.0, end_s: float = 4.0):
    """The people stage's sparse pass on a cut (every 10th clip frame: the camera-motion meter's
    samples, so layout and overlay equal the full-rate pass's); returns (track_shot outputs, task)."""
    task = task_for(path, start_s, end_s)
    return stage.track_shot(task, stage.sparse_step(task.clip_fps)), task


def test_shared_split_screens_are_labelled_split_and_the_mit_switch_rejects_them(stage):
    for name in ("visualvoice_interview.mp4", "clearervoice_tse_001.avi"):
        out, task = sparse(stage, clip(name))
        shot = stage.decide(*out, task).shot
        assert shot.kept and shot.reason == "", (name, shot)
        assert shot.layout == "split" and len(shot.seams) == 1 and abs(shot.seams[0] - 0.5) <= 0.02, (name, shot)
        rejected = PeopleStage(split_screens="reject").decide(*out, task)
        assert not rejected.shot.kept and rejected.shot.reason == "layout=split" and rejected.person_tracks == []
        assert rejected.shot.seams == shot.seams  # a rejected shot keeps its measures (shots table)
    with pytest.raises(ValueError, match="split_screens"):
        PeopleStage(split_screens="drop")


def test_overlays_cover_about_the_drawn_area_and_the_clean_two_shot_none(stage, cases):
    clean = stage.decide(*sparse(stage, cases["clean"])[0], task_for(cases["clean"])).shot
    assert clean.kept and clean.layout == "single" and clean.seams == []
    assert clean.overlay_share is not None and clean.overlay_share < 0.002, clean
    out, task = sparse(stage, cases["overlays"])
    shot = stage.decide(*out, task).shot
    drawn = DRAWN_AREA / FRAME_AREA  # 0.1445
    # measured 0.096 (2-core VM): the changing text's extent; the drawn boxes add 4-6 px margins around it
    assert 0.5 * drawn <= shot.overlay_share <= 1.05 * drawn, shot.overlay_share
    assert shot.layout == "single" and shot.kept
    boxes = overlay.overlay_boxes(out[2].text_masks())  # 320x267 px: timer, caption, ticker
    # the three drawn overlays (490-4,800 px^2 here); measured besides them since the sparse pass shows
    # the full-rate frames: one 6x27 px box (162 px^2) at the guest's moving hand, not an overlay
    big = [b for b in boxes if (b[2] - b[0]) * (b[3] - b[1]) >= 300]
    assert len(big) == 3 and len(boxes) <= 4, boxes
    assert any(x1 - x0 >= 0.95 * 320 and y0 >= 240 for x0, y0, x1, y1 in boxes), boxes  # the ticker band
    rejected = PeopleStage(max_overlay_share=0.05).decide(*out, task).shot
    assert rejected.reason == f"overlay={shot.overlay_share:.2f}" and not rejected.kept
    assert PeopleStage(max_overlay_share=0.2).decide(*out, task).shot.kept


def test_constructed_occlusion_is_measured_and_can_reject(stage, cases):
    # the stage's own path (sparse pass, then the full-rate decision): the occluded man's full-rate track
    # breaks into pieces (41 + 47 + 18 of 100 frames), none counted, but occlusion sees every piece
    clean = stage.process(task_for(cases["clean"])).shot
    task = task_for(cases["occluded"])
    shot = stage.process(task).shot
    # measured 0.02 clean, 0.41 occluded (2-core VM)
    assert clean.occlusion_share <= 0.1 and shot.occlusion_share >= clean.occlusion_share + 0.25, (clean, shot)
    assert shot.kept
    # rejected by the sparse pass already (cheap first: its occlusion, 0.52, is the reason)
    rejected = replace(stage, max_occlusion_share=0.25).process(task)
    assert not rejected.shot.kept and rejected.person_tracks == []
    assert rejected.shot.reason.startswith("occlusion=") and float(rejected.shot.reason[10:]) > 0.25


def _track(boxes):
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return PersonTrack(0, np.arange(len(b), dtype=np.int32), b, np.ones(len(b), np.float32), np.zeros((len(b), 17, 3)))


def test_occlusion_rule_on_exact_boxes():
    back = _track([[0, 0, 100, 200]] * 4)
    front = _track([[60, 100, 160, 300]] * 4)  # covers 20 % of back (40x100 of 100x200): below 30 %
    assert overlay.occlusion_share([back, front]) == 0.0
    front = _track([[40, 100, 140, 300]] * 4)  # covers 30 %: not more than 30 %
    assert overlay.occlusion_share([back, front]) == 0.0
    front = _track([[30, 50, 130, 250]] * 2 + [[500, 0, 600, 200]] * 2)  # 35 % in 2 of 4 frames; lower: in front
    assert overlay.occlusion_share([back, front]) == 2 / 8
    level = _track([[30, 0, 130, 200]] * 4)  # 70 % either way, bottoms level: both count
    assert overlay.occlusion_share([back, level]) == 1.0
    assert overlay.occlusion_share([back]) == 0.0 and overlay.occlusion_share([]) is None


def test_overlay_rule_on_masks():
    h, w = 180, 320
    line = np.zeros((h, w), bool)
    line[10:20, 20:120:3] = True  # glyph strokes of a 10 px line of text
    flash = np.zeros((h, w), bool)
    flash[100:110, 200:260] = True
    masks = [line, line.copy(), flash] + [np.zeros((h, w), bool)] * 7
    assert overlay.overlay_boxes(masks) == [(20, 10, 120, 20)]  # strokes at x 20..119; the flash: 1 pair of 10
    assert overlay.overlay_share(masks) == pytest.approx(100 * 10 / (h * w))
    tall = np.zeros((h, w), bool)
    tall[0:100, 0:50] = True  # taller than 25 % of the frame: not a line of text
    assert overlay.overlay_boxes([tall, tall]) == []
    assert overlay.overlay_share([]) is None


@pytest.mark.usefixtures("prefect_api")
def test_collect_stores_the_labels_in_clips_and_shots(tmp_path, cases):
    from conftest import cut

    from talkset.flows.collect import collect
    from talkset.storage.catalog import connect

    interview = cut(clip("visualvoice_interview.mp4"), tmp_path / "interview4.mp4", 0.0, 4.0)
    root = tmp_path / "root"
    summary = collect(sources=[str(cases["overlays"]), str(interview)], root=str(root),
                      config={"annotate": False, "split_screens": "reject"})
    assert summary["clips_kept"] == 1 and summary["failures"] == 0, summary
    con = connect(root)
    (lay, seams, ov, occ, n), = con.execute(
        "SELECT layout, seams, overlay_share, occlusion_share, num_people FROM clips").fetchall()
    assert lay == "single" and seams == [] and n == 2
    assert 0.5 * DRAWN_AREA / FRAME_AREA <= ov <= 1.05 * DRAWN_AREA / FRAME_AREA and 0.0 <= occ <= 0.1
    shots = con.execute("SELECT source, kept, reason, layout, seams FROM shots ORDER BY source").fetchall()
    assert len(shots) == 2, shots
    split = [r for r in shots if not r[1]]
    assert len(split) == 1 and split[0][2] == "layout=split" and split[0][3] == "split", shots
    assert len(split[0][4]) == 1 and abs(split[0][4][0] - 0.5) <= 0.02


def test_a_moving_camera_leaves_overlays_unmeasured(tmp_path):
    import camera_cases

    from talkset import media
    from talkset.stages.camera import CameraMotionMeter

    shares = []
    for pan in (0.0, 30.0):  # interview | debate + timer + ticker; then its right panel panning 30 px/s
        path = camera_cases.split_overlay(clip("visualvoice_interview.mp4").parent, tmp_path / f"s{pan:g}.mp4", pan)
        meter = CameraMotionMeter(10)
        for k, _t, img in media.iter_frames(str(path), 0.0, 4.0, fps=25.0):
            meter.add(k, img)
        shares.append(meter.overlay_share())
    assert shares[0] is not None and shares[0] > 0  # without person boxes: the timer (measured 0.003)
    assert shares[1] is None  # no pair with a still camera: nothing measured
