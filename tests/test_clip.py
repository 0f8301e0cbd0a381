"""clip stage with real ffmpeg on dvscripts_blackjournal.mp4 (480x360, 29.97 fps, AAC 44.1 kHz)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import correlate

from talkset.items import Clip, Shot, Source, clip_id_for, source_id_for
from talkset.media import iter_frames, probe, read_audio, run_ffmpeg
from talkset.stages.base import StageError
from talkset.stages.clip import ClipStage, tick_count, wav_samples
from talkset.storage.root import TMP_PREFIX

SHARED = Path(os.environ.get("TALKSET_SHARED", Path(__file__).resolve().parents[2] / "shared"))
CLIPS = SHARED / "data" / "clips"
START_S, END_S = 20.0, 24.0  # inside the static two-person interview shot; people move a little


def shared_file(name: str) -> Path:
    p = CLIPS / name
    if not p.is_file():
        pytest.fail(f"missing shared test clip {p}: tests need ../shared beside the checkout")
    return p


def clip_task(src: Path, start_s: float, end_s: float, shot_idx: int = 1) -> Clip:
    sid = source_id_for(str(src))
    video = Source(url=str(src), source_id=sid, video_path=str(src))
    shot = Shot(sid, shot_idx, 0, 0, start_s, end_s)
    return Clip(source=video, shot=shot, clip_id=clip_id_for(sid, shot_idx), clip_fps=25.0)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    mse = d[mask].mean() if mask is not None else d.mean()
    return 99.0 if mse == 0 else float(10 * np.log10(255.0**2 / mse))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip_root")
    src = shared_file("dvscripts_blackjournal.mp4")
    task = ClipStage(root=str(root)).process(clip_task(src, START_S, END_S))
    return root, src, task


def test_clip_files_and_rates(made):
    root, _src, task = made
    mp4, wav = Path(task.video_path), Path(task.audio_path)
    assert mp4 == root.resolve() / "clips" / f"{task.clip_id}.mp4"
    assert wav == mp4.with_suffix(".wav")
    pr = probe(mp4)
    assert pr.vcodec == "h264" and pr.fps == pytest.approx(25.0)
    assert pr.num_frames == task.num_frames == 100 == tick_count(START_S, END_S, 25.0)
    assert (pr.width, pr.height) == (task.width, task.height) == (480, 360)
    assert pr.duration_s == pytest.approx(4.0, abs=1e-3)
    assert task.clip_fps == 25.0
    n, rate, ch = wav_samples(wav)
    assert (rate, ch) == (16000, 1)
    assert abs(n - 64000) <= 160
    assert not list(mp4.parent.glob(f"{TMP_PREFIX}*"))
    # yuv420p and constant frame rate: every decoded frame 40 ms after the previous one
    times = np.array([t for _, t, _ in iter_frames(mp4, scale=0.25)])
    assert len(times) == 100 and np.allclose(np.diff(times), 0.04, atol=1e-4)
    import av

    with av.open(str(mp4)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"


def test_frames_are_the_ticks_of_iter_frames(made):
    """Clip frame k is the source frame iter_frames picks at start_s + k/25, frame by frame."""
    _root, src, task = made
    clip_frames = [f for _, _, f in iter_frames(task.video_path)]
    ref = [f for _, _, f in iter_frames(src, START_S, END_S, fps=25)]
    assert len(clip_frames) == len(ref) == 100
    scores = np.array([psnr(a, b) for a, b in zip(clip_frames, ref)])
    assert scores.min() > 35.0 and scores.mean() > 38.0  # measured 41.4 / 42.6 dB (crf 18)
    # shifted by one clip frame is clearly worse
    shifted = np.mean([psnr(a, b) for a, b in zip(clip_frames[1:], ref[:-1])])
    assert shifted < scores.mean() - 4.0


@pytest.mark.parametrize("k", [0, 50, 99])
def test_frame_accuracy_against_source_frames(made, k):
    """Against every decoded source frame near the tick, the clip frame matches exactly the one
    the fps rule picks (last frame with time <= tick + 20 ms) and is far from frames 3+ away,
    measured where the picture moves."""
    _root, src, task = made
    clip_frame = next(f for i, _, f in iter_frames(task.video_path) if i == k)
    tick = START_S + k / 25.0
    near = [(t, f) for _, t, f in iter_frames(src, tick - 0.25, tick + 0.25)]  # every source frame
    times = np.array([t for t, _ in near])
    j = int(np.nonzero(times <= tick + 0.02 + 1e-6)[0][-1])
    assert 3 <= j <= len(near) - 4
    # pixels that change between the frames 3 before and 3 after: the moving part of the picture
    motion = np.abs(near[j - 3][1].astype(int) - near[j + 3][1].astype(int)).max(axis=2) > 30
    assert motion.sum() > 2000
    scores = {o: psnr(clip_frame, near[j + o][1], motion) for o in range(-3, 4)}
    assert psnr(clip_frame, near[j][1]) > 30.0
    assert scores[0] > 30.0
    assert max(scores, key=scores.get) == 0
    assert scores[-3] < scores[0] - 6.0 and scores[3] < scores[0] - 6.0
    assert scores[-1] < scores[0] - 6.0 and scores[1] < scores[0] - 6.0  # measured 9-19 dB apart


def test_audio_is_aligned(made):
    """The WAV is the source audio from start_s: cross-correlation peaks at 20.000 s (+-1 ms)."""
    _root, src, task = made
    clip_audio = read_audio(task.audio_path, 16000)
    assert len(clip_audio) == 64000 and np.abs(clip_audio).max() > 0.05
    window = read_audio(src, 16000, START_S - 1.0, END_S + 1.0)
    tmpl = clip_audio[8000:40000]  # 2 s of the clip, starting 0.5 s in
    xc = correlate(window, tmpl, mode="valid", method="fft")
    norm = np.sqrt(correlate(window**2, np.ones_like(tmpl), mode="valid", method="fft")) * np.linalg.norm(tmpl)
    best = int(np.argmax(xc / np.maximum(norm, 1e-9)))
    assert (xc / np.maximum(norm, 1e-9))[best] > 0.95
    offset_s = (START_S - 1.0) + best / 16000 - 0.5
    assert offset_s == pytest.approx(START_S, abs=1e-3)


def test_resume_reuses_complete_clip(made):
    root, src, task = made
    mp4 = Path(task.video_path)
    before = (mp4.stat().st_mtime_ns, Path(task.audio_path).stat().st_mtime_ns)
    again = ClipStage(root=str(root)).process(clip_task(src, START_S, END_S))
    assert (again.video_path, again.num_frames) == (task.video_path, 100)
    assert (mp4.stat().st_mtime_ns, Path(task.audio_path).stat().st_mtime_ns) == before


def test_incomplete_clip_is_rewritten(tmp_path):
    src = shared_file("dvscripts_blackjournal.mp4")
    task = clip_task(src, 30.0, 30.5, shot_idx=7)
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / f"{task.clip_id}.mp4").write_bytes(b"half a file")
    out = ClipStage(root=str(tmp_path)).process(task)
    assert out.num_frames == probe(out.video_path).num_frames == 13  # ticks 30.00 .. 30.48
    assert wav_samples(out.audio_path)[0] == 8000
    assert sorted(p.name for p in clips.iterdir()) == [f"{task.clip_id}.mp4", f"{task.clip_id}.wav"]


def test_bad_inputs_are_stage_errors(tmp_path):
    src = shared_file("dvscripts_blackjournal.mp4")
    with pytest.raises(StageError, match="ffmpeg failed"):
        ClipStage(root=str(tmp_path), preset="no-such-preset").process(clip_task(src, 30.0, 30.2))
    assert not [p for p in (tmp_path / "clips").iterdir()]  # temp files removed
    with pytest.raises(StageError, match="no audio stream"):
        ClipStage(root=str(tmp_path)).process(clip_task(shared_file("psd_goldeneye-vfr-drop3.mp4"), 1.0, 2.0))
    with pytest.raises(StageError, match="missing"):
        ClipStage(root=str(tmp_path)).process(clip_task(tmp_path / "gone.mp4", 0.0, 1.0))


def test_odd_frame_size_is_cropped_not_scaled(tmp_path):
    """A 321x241 source (libx264 needs even sizes): the clip drops the last column and row, so
    pixel coordinates of tracks stay valid."""
    src = tmp_path / "odd.mkv"
    run_ffmpeg(
        ["-f", "lavfi", "-i", "testsrc2=size=321x241:rate=30:duration=2", "-f", "lavfi", "-i",
         "sine=frequency=440:sample_rate=48000:duration=2", "-c:v", "ffv1", "-c:a", "pcm_s16le", str(src)],
        "odd-size test video",
    )  # fmt: skip
    out = ClipStage(root=str(tmp_path / "root")).process(clip_task(src, 0.5, 1.5))
    assert (out.width, out.height, out.num_frames) == (320, 240, 25)
    clip_frames = [f for _, _, f in iter_frames(out.video_path)]
    ref = [f[:240, :320] for _, _, f in iter_frames(src, 0.5, 1.5, fps=25)]
    assert np.mean([psnr(a, b) for a, b in zip(clip_frames, ref)]) > 35.0  # measured 39.5 dB (18.9 shifted)
    assert wav_samples(out.audio_path) == (16000, 16000, 1)


def test_tick_count():
    assert tick_count(20.0, 24.0, 25.0) == 100
    assert tick_count(11.3780333, 73.0062667, 25.0) == 1541  # ticks 11.378 .. 72.978
    assert tick_count(0.0, 0.04, 25.0) == 1
    assert tick_count(0.0, 0.0400001, 25.0) == 1
    assert tick_count(0.0, 0.041, 25.0) == 2
    assert tick_count(5.0, 5.0, 25.0) == 0


def test_rotation_metadata_is_applied(tmp_path):
    """Issue 12: a 480x360 source tagged rotate=90 displays as 360x480, and so must its clip (pixel for
    pixel what ffmpeg's autorotate shows). Odd rotated sizes go through the bgr24 path and are cropped."""
    import subprocess

    from talkset.media import ffmpeg_exe

    src, rot = tmp_path / "src.mp4", tmp_path / "rot90.mp4"
    run_ffmpeg(["-ss", "20", "-i", str(shared_file("dvscripts_blackjournal.mp4")), "-t", "1", "-c:v", "libx264",
                "-preset", "ultrafast", "-crf", "16", "-c:a", "aac", str(src)], "cut")  # fmt: skip
    run_ffmpeg(["-i", str(src), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(rot)], "rotate tag")
    pr = probe(rot)
    assert (pr.rotation, pr.width, pr.height) == (90, 360, 480)
    out = ClipStage(root=str(tmp_path / "root")).process(clip_task(rot, 0.0, 1.0))
    assert (out.width, out.height, out.num_frames) == (360, 480, 25)
    shown = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(rot), "-frames:v", "1", "-f", "rawvideo",
                            "-pix_fmt", "bgr24", "-"], capture_output=True, check=True).stdout  # fmt: skip
    shown = np.frombuffer(shown, np.uint8).reshape(480, 360, 3)
    first = next(iter_frames(out.video_path))[2]
    assert psnr(first, shown) > 35.0
    assert psnr(first, np.ascontiguousarray(np.rot90(shown, 2))) < 20.0  # not upside down
