"""Audio-visual sync signals (talkset/annotators/av_sync.py) and the align stage's speech
attribution (talkset/stages/align.py) on real audio from ../shared/data.

Constructed labels: a "mouth" whose opening is the real speech envelope of a clip, delayed by 3
frames (120 ms, as a speaker's lips lead their sound) plus noise, is *synchronised* with that
clip's audio; the same construction from another clip's speech is *not* (a moving mouth
unrelated to what plays). Keypoints for the align stage are built from those apertures on a real
face geometry (iBUG-68 inner lips and eye corners in the COCO-WholeBody slots).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import clip

from talkset import media
from talkset.annotators import av_sync
from talkset.items import (
    Clip,
    FaceTrack,
    PersonTrack,
    PoseTrack,
    Shot,
    Source,
    SpeakingTrack,
)
from talkset.stages.align import AlignStage, attribute_speech

N = 150  # 6 s at 25 fps


@pytest.fixture(scope="module")
def audio():
    """6 s of the boxer talking (interview 9.6 s) and 6 s of the restaurant man (0.3 s), 16 kHz."""
    own = media.read_audio(clip("visualvoice_interview.mp4"), 16000, 9.6, 15.6)
    other = media.read_audio(clip("visualvoice_noisy_restaurant.mp4"), 16000, 0.3, 6.3)
    return own[: N * 640], other[: N * 640]


def mouth_from(envelope: np.ndarray, lead: int = 3, seed: int = 0) -> np.ndarray:
    """A constructed lip aperture that leads ``envelope`` by ``lead`` frames, with 30 % noise."""
    rng = np.random.default_rng(seed)
    e = envelope / (envelope.max() + 1e-9) * 0.4
    ap = np.concatenate([e[lead:], np.repeat(e[-1:], lead)])
    return (ap + rng.normal(0, 0.3 * ap.std(), len(ap))).clip(0, None)


def face_keypoints(aperture: np.ndarray, cx: float, eye_dist: float = 60.0) -> np.ndarray:
    """(T, 133, 3) keypoints with only the face's inner lips and outer eye corners set (score
    0.9): eyes ``eye_dist`` px apart, inner lips opened by ``aperture * eye_dist`` px."""
    T = len(aperture)
    kp = np.zeros((T, 133, 3), np.float32)
    f0 = av_sync.FACE0
    kp[:, f0 + 36] = [cx - eye_dist / 2, 200, 0.9]
    kp[:, f0 + 45] = [cx + eye_dist / 2, 200, 0.9]
    gap = aperture * eye_dist
    for dx, (up, lo) in zip((-10, 0, 10), av_sync.INNER_LIP_PAIRS):
        kp[:, f0 + up, 0] = kp[:, f0 + lo, 0] = cx + dx
        kp[:, f0 + up, 1] = 260 - gap / 2
        kp[:, f0 + lo, 1] = 260 + gap / 2
        kp[:, f0 + up, 2] = kp[:, f0 + lo, 2] = 0.9
    return kp


def test_envelope_follows_speech_and_silence(audio):
    own, _ = audio
    a = own.copy()
    a[2 * 16000 : 3 * 16000] = 0.0  # silence over 2-3 s
    env = av_sync.speech_envelope(a, N)
    assert env.shape == (N,) and env.dtype == np.float32
    assert env[55:70].max() < 1e-4  # silent frames (2.2-2.8 s)
    assert np.median(env[:45]) > 0.01  # the boxer's speech
    with pytest.raises(ValueError, match="same frames"):
        av_sync.lip_sync(np.zeros(5), np.zeros(6))


def test_lip_aperture_geometry():
    ap = np.array([0.0, 0.1, 0.3], np.float32)
    kp = face_keypoints(ap, cx=300.0)
    np.testing.assert_allclose(av_sync.lip_aperture(kp), ap, atol=1e-5)
    kp[1, av_sync.FACE0 + 62, 2] = 0.1  # a lip point not confident -> NaN
    out = av_sync.lip_aperture(kp)
    assert np.isnan(out[1]) and np.isfinite(out[[0, 2]]).all()
    with pytest.raises(ValueError, match="133"):
        av_sync.lip_aperture(np.zeros((3, 17, 3)))


def test_synchronised_mouth_scores_above_an_unrelated_one(audio):
    own, other = audio
    env = av_sync.speech_envelope(own, N)
    synced = av_sync.lip_sync(mouth_from(env), env)
    unrelated = av_sync.lip_sync(mouth_from(av_sync.speech_envelope(other, N)), env)
    assert synced.dtype == np.float32 and synced.shape == (N,)
    # measured: synced mean 0.48 (min 0.29), unrelated mean 0.19 (chance correlation of two
    # speech envelopes), synced above unrelated in 100 % of frames
    assert np.nanmean(synced) > 0.4 and np.nanmin(synced) > 0.15
    assert np.nanmean(unrelated) < 0.3
    assert np.nanmean(synced) - np.nanmean(unrelated) > 0.2
    assert np.mean(synced > unrelated) > 0.9
    # a mouth that is never seen, or barely moves (landmark jitter), gives no value
    assert np.isnan(av_sync.lip_sync(np.full(N, np.nan), env)).all()
    jitter = 0.02 + np.random.default_rng(2).normal(0, 0.003, N)
    assert np.isnan(av_sync.lip_sync(jitter, env)).all()


def test_attribute_speech_rule():
    s = np.array([0.8, 0.8, -0.4, 0.8, 0.8, np.nan])
    own = np.array([0.0, 0.5, 0.0, np.nan, 0.0, 0.0])
    other = np.array([0.6, 0.6, 0.6, 0.6, np.nan, 0.6])
    out = attribute_speech(s, own, other)
    # strong contrary evidence -> -1; own lips follow as well -> unchanged; no evidence -> unchanged
    np.testing.assert_allclose(out[:5], [-1.0, 0.8, -1.0, -1.0, 0.8], atol=1e-6)
    assert np.isnan(out[5])
    assert np.all(out[:5] <= s[:5] + 1e-6)  # never raises a score


def _clip_with_two_people(tmp_path, audio_wav, ap_left, ap_right, scores):
    """A Clip whose two people (left x 300, right x 900) have the given apertures and speaking
    scores, one face track each, and the given audio file."""
    f = np.arange(N, dtype=np.int32)
    people, poses, faces, speaking = [], {}, [], {}
    for tid, (cx, ap) in enumerate(((300.0, ap_left), (900.0, ap_right))):
        box = np.tile(np.array([cx - 150, 100, cx + 150, 700], np.float32), (N, 1))
        people.append(PersonTrack(tid, f, box, np.ones(N, np.float32), np.zeros((N, 17, 3), np.float32)))
        poses[tid] = PoseTrack(tid, f, face_keypoints(ap, cx))
        fb = np.tile(np.array([cx - 40, 160, cx + 40, 280], np.float32), (N, 1))
        faces.append(FaceTrack(tid, f, fb, np.ones(N, np.float32), np.zeros((N, 5, 2), np.float32), np.ones(N, bool)))
        sc = scores[tid].astype(np.float32)
        speaking[tid] = SpeakingTrack(tid, f, sc, sc, np.ones(N, np.float32), sc)
    src = Source(url="constructed", source_id="c")
    return Clip(source=src, shot=Shot("c", 0, 0, N, 0.0, N / 25), clip_id="c-s0000", clip_fps=25.0, person_tracks=people,
                video_path=None, audio_path=str(audio_wav), width=1200, height=720, num_frames=N, poses=poses,
                face_tracks=faces, speaking=speaking)  # fmt: skip


def test_align_attributes_speech_to_the_synchronised_mouth(audio, tmp_path):
    """Both people 'talk' (speaking stage score +0.8 throughout); the left mouth follows the
    boxer's voice that plays, the right one follows another man's speech that does not play:
    the right person is demoted on most frames, the left keeps its score; every raw signal is a
    column and the pre-attribution score is kept as asd_vad_score."""
    from scipy.io import wavfile

    own, other = audio
    wav = tmp_path / "own.wav"
    wavfile.write(wav, 16000, (np.clip(own, -1, 1) * 32767).astype(np.int16))
    env = av_sync.speech_envelope(own, N)
    scores = {0: np.full(N, 0.8), 1: np.full(N, 0.8)}
    task = _clip_with_two_people(tmp_path, wav, mouth_from(env), mouth_from(av_sync.speech_envelope(other, N), seed=1), scores)
    al = AlignStage(attribution=True).process(task).alignment
    left, right = al.columns[0], al.columns[1]
    for col in (left, right):
        for c in ("lip_aperture", "lip_sync", "asd_vad_score", "speaking_score"):
            assert col[c].shape == (N,) and col[c].dtype == np.float32
        np.testing.assert_allclose(col["asd_vad_score"], 0.8, atol=1e-6)
    assert np.mean(left["speaking_score"] > 0) > 0.95  # measured 1.00
    assert np.mean(right["speaking_score"] < 0) > 0.7  # measured 0.85
    assert al.stats["speech_demoted_frames"] == int(np.sum(right["speaking_score"] <= 0) + np.sum(left["speaking_score"] <= 0))
    # attribution off (the default): the speaking stage's score stays, the raw sync columns are there
    al_off = AlignStage().process(task).alignment
    np.testing.assert_allclose(al_off.columns[1]["speaking_score"], 0.8, atol=1e-6)
    assert "lip_sync" in al_off.columns[1] and "asd_vad_score" not in al_off.columns[1]
