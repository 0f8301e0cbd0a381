"""speaking stage on real footage: scores follow the audio, not just the face (issue 5).

Clips are cut with ffmpeg into a temporary folder: a 25 fps video and 16 kHz mono WAVs with the
original audio, with silence, and with another clip's speech. Face tracks come from the real
faces stage (YuNet + IoU linking).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import clip

from talkset import media
from talkset.items import Clip, FaceTrack, Shot, Source
from talkset.stages.base import StageError
from talkset.stages.faces import FacesStage
from talkset.stages.speaking import SpeakingStage, fuse

KEYS = ("frame_idx", "asd_logit_talkset", "asd_logit_ava", "vad_prob", "speaking_score")


def make_clip(folder, src, start, dur, audio=None):
    """Cut [start, start + dur) s of ``src`` (25 fps, no audio) and one WAV per entry of ``audio``:
    {name: None (original) | "silence" | (other_clip, other_start)}."""
    return media.cut_with_audio_variants(folder, src, start, dur, audio)


def clip_task(mp4, wav, dur, faces=None):
    task = Clip(
        source=Source(url=str(mp4), source_id="test"),
        shot=Shot("test", 0, 0, int(dur * 25), 0.0, dur),
        clip_id="test-s0000",
        clip_fps=25.0,
        video_path=str(mp4),
        audio_path=str(wav),
        num_frames=int(round(dur * 25)),
    )
    if faces is not None:
        task.face_tracks = faces
    return task


@pytest.fixture(scope="module")
def stage():
    st = SpeakingStage()
    st.setup()
    return st


def run_variants(stage, mp4, wavs, dur):
    faces = FacesStage()
    faces.setup()
    tracks = faces.process(clip_task(mp4, wavs["orig"], dur)).face_tracks
    out = {}
    for name, wav in wavs.items():
        out[name] = stage.process(clip_task(mp4, wav, dur, tracks)).speaking
    return tracks, out


@pytest.fixture(scope="module")
def interview(stage, tmp_path_factory):
    """visualvoice_interview 9.5-15 s: the boxer (right) talks, the anchor (left) listens."""
    folder = tmp_path_factory.mktemp("interview")
    mp4, wavs = make_clip(
        folder, clip("visualvoice_interview.mp4"), 9.5, 5.5,
        {"orig": None, "silent": "silence", "foreign": (clip("visualvoice_noisy_restaurant.mp4"), 1.0)},
    )  # fmt: skip
    return run_variants(stage, mp4, wavs, 5.5)


@pytest.fixture(scope="module")
def debate(stage, tmp_path_factory):
    """clearervoice_tse_001 0-6 s: two debaters talking over each other."""
    folder = tmp_path_factory.mktemp("debate")
    mp4, wavs = make_clip(folder, clip("clearervoice_tse_001.avi"), 0.0, 6.0, {"orig": None, "silent": "silence"})
    return run_variants(stage, mp4, wavs, 6.0)


def by_side(tracks, speaking):
    """{"left": result, "right": result} for a split screen with one face track per half."""
    assert len(tracks) == 2, [len(t.frame_idx) for t in tracks]
    xs = {t.face_track_id: float(np.mean(t.boxes[:, [0, 2]])) for t in tracks}
    left, right = sorted(xs, key=xs.get)
    return {"left": speaking[left], "right": speaking[right]}


def test_columns_and_range(interview, stage):
    tracks, out = interview
    assert set(out["orig"]) == {t.face_track_id for t in tracks}
    for t in tracks:
        r = out["orig"][t.face_track_id]
        assert {f.name for f in dataclasses.fields(r)} - {"face_track_id"} == set(KEYS)
        F = len(t.frame_idx)
        assert F >= 130  # the face is found in (nearly) every frame of the 137-frame cut
        np.testing.assert_array_equal(r.frame_idx, t.frame_idx)
        for k in KEYS[1:]:
            v = getattr(r, k)
            assert v.dtype == np.float32 and v.shape == (F,) and np.isfinite(v).all()
        assert r.speaking_score.min() >= -1 and r.speaking_score.max() <= 1
        assert 0 <= r.vad_prob.min() and r.vad_prob.max() <= 1
    assert "light-asd_finetuning_TalkSet.model" in stage.model_info().values()


def test_interview_follows_who_talks(interview):
    """Original audio: the boxer (right) > 0 where he talks; the listening anchor mostly < 0."""
    tracks, out = interview
    o = by_side(tracks, out["orig"])
    boxer, anchor = o["right"].speaking_score, o["left"].speaking_score
    assert np.mean(o["right"].vad_prob > 0.5) > 0.9  # speech nearly all the time (measured 0.96)
    assert np.mean(boxer > 0) > 0.9  # measured 0.96
    assert np.mean(anchor > 0) < 0.2  # measured 0.07
    assert boxer.mean() - anchor.mean() > 0.8  # measured mean +0.76 vs -0.60


def test_silence_scores_negative_for_everyone(interview, debate):
    """The same clip with the audio replaced by silence: < 0 in >= 90 % of frames for every person,
    and very different from the original (a stage scoring the same without sound has failed)."""
    for tracks, out in (interview, debate):
        for tid in out["orig"]:
            silent = out["silent"][tid].speaking_score
            assert np.mean(silent < 0) >= 0.9  # measured 1.00
            assert out["silent"][tid].vad_prob.max() < 0.1
        talkers = [out["orig"][tid].speaking_score.mean() - out["silent"][tid].speaking_score.mean() for tid in out["orig"]]
        assert max(talkers) > 1.5  # measured ~1.8 for the talking person(s)
    # the raw TalkSet logit alone would NOT pass: it barely moves with silence (a lip-motion detector)
    s = by_side(interview[0], interview[1]["silent"])
    assert np.mean(s["right"].asd_logit_talkset > 0) > 0.9


def test_foreign_speech_does_not_make_the_listener_speak(interview):
    """Another clip's speech over the cut: the silent-lips anchor stays < 0, far below the boxer."""
    tracks, out = interview
    f = by_side(tracks, out["foreign"])
    assert np.mean(f["right"].vad_prob > 0.5) > 0.6  # there is speech to be fooled by (0.80)
    assert np.mean(f["left"].speaking_score < 0) > 0.85  # measured 0.95
    assert f["right"].speaking_score.mean() - f["left"].speaking_score.mean() > 0.6  # measured ~1.0


def test_debate_each_person_has_a_curve(debate):
    """Two debaters talking over each other: one face track and one curve each, both > 0 mostly."""
    tracks, out = debate
    d = by_side(tracks, out["orig"])
    shares = {side: float(np.mean(r.speaking_score > 0)) for side, r in d.items()}
    assert shares["left"] > 0.6 and shares["right"] > 0.6, shares  # measured 0.91 / 0.99 (0-8 s)
    assert not np.allclose(d["left"].speaking_score, d["right"].speaking_score)


def test_no_faces_and_bad_input(stage, tmp_path):
    task = clip_task(tmp_path / "none.mp4", tmp_path / "none.wav", 1.0, faces=[])
    assert stage.process(task).speaking == {}
    bad = [FaceTrack(face_track_id=0, frame_idx=np.array([0, 1, 3], np.int32), boxes=np.zeros((3, 4), np.float32),
                     scores=np.zeros(3, np.float32), landmarks=np.zeros((3, 5, 2), np.float32), detected=np.ones(3, bool))]
    with pytest.raises(StageError, match="missing"):
        stage.process(clip_task(tmp_path / "none.mp4", tmp_path / "none.wav", 1.0, faces=bad))


def test_fuse_needs_both_speech_and_face():
    F = 20
    hi, lo = np.full(F, 4.0), np.full(F, -4.0)
    assert (fuse(hi, hi, np.full(F, 0.95)) > 0.8).all()
    assert (fuse(hi, hi, np.full(F, 0.02)) < -0.9).all()  # no speech
    assert (fuse(lo, lo, np.full(F, 0.95)) < -0.9).all()  # speech, but not this face
    s = fuse(hi, lo, np.full(F, 0.95))  # the two models disagree: the mean logit decides (0 here)
    assert np.all(np.abs(s) < 1e-6)
