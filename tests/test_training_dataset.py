"""talkset.training.dataset / splits / audio_features on a small real dataset root.

The root is built from real footage (../shared/data/clips) with the project's own pieces: ffmpeg
cuts 25 fps clips + 16 kHz WAVs, the people stage (YOLO11n-pose + ByteTrack) finds the person
tracks, and the write stage commits ``clips`` + ``frames`` shards. One clip also gets a
``speaking_score`` column (a per-frame audio-energy rule for person 0, unknown for person 1) so
the score path is exercised with real values and nulls.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from talkset import env

env.configure(threads=1)

SHARED = Path(os.environ.get("TALKSET_SHARED", Path(__file__).resolve().parent.parent.parent / "shared"))
CLIPS = SHARED / "data" / "clips"

# (clip file, start s, end s): 2 sources x 2 clips of 3 s; split-screen, 2 people each
SEGMENTS = [
    ("visualvoice_interview.mp4", 0.0, 3.0),
    ("visualvoice_interview.mp4", 3.0, 6.0),
    ("clearervoice_tse_001.avi", 0.0, 3.0),
    ("clearervoice_tse_001.avi", 3.0, 6.0),
]
FPS = 25.0
SPEAKING_CLIP = 2  # index in SEGMENTS that gets speaking scores


def _energy_speaking(wav: np.ndarray, n: int) -> np.ndarray:
    """+1 where the frame's RMS is above the clip median, else -1 (per 25 fps frame)."""
    per = 16000 // 25
    rms = np.array([np.sqrt(np.mean(wav[i * per : (i + 1) * per] ** 2) + 1e-12) for i in range(n)])
    return np.where(rms > np.median(rms), 1.0, -1.0).astype(np.float32)


def build_small_root(base: Path) -> Path:
    """Build (once; reused when ``base/READY`` exists) a dataset root of 4 real clips."""
    from talkset import media
    from talkset.items import Alignment, Clip, Shot, Source, clip_id_for, source_id_for
    from talkset.stages.people import PeopleStage
    from talkset.stages.write import WriteStage
    from talkset.storage.root import DatasetRoot

    root = base / "root"
    if (base / "READY").is_file():
        return root
    droot = DatasetRoot(root)
    droot.make_dirs()
    people = PeopleStage(imgsz=320, max_camera_motion=1.0)
    people.setup()
    shot_idx: dict[str, int] = {}
    for i, (name, t0, t1) in enumerate(SEGMENTS):
        src = CLIPS / name
        if not src.is_file():
            pytest.fail(f"missing shared test clip {src}: tests need ../shared beside the checkout")
        sid = source_id_for(str(src))
        k = shot_idx.get(sid, 0)
        shot_idx[sid] = k + 1
        cid = clip_id_for(sid, k)
        mp4 = droot.clips_dir / f"{cid}.mp4"
        wav = droot.clips_dir / f"{cid}.wav"
        media.run_ffmpeg(["-ss", f"{t0}", "-i", str(src), "-t", f"{t1 - t0}", "-vf", "fps=25,scale=640:360",
                          "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", str(mp4)], "fixture clip")
        media.run_ffmpeg(["-ss", f"{t0}", "-i", str(src), "-t", f"{t1 - t0}", "-vn", "-ac", "1", "-ar", "16000",
                          str(wav)], "fixture audio")
        pr = media.probe(mp4)
        n = int(round((t1 - t0) * FPS))
        video = Source(url=str(src), source_id=sid, video_path=str(mp4))
        shot = Shot(sid, k, int(t0 * FPS), int(t1 * FPS), 0.0, t1 - t0)
        task = Clip(source=video, shot=shot, clip_id=cid, clip_fps=FPS)
        task = people.process(task)
        assert task.shot.kept and len(task.person_tracks) == 2, (cid, task.shot.reason, len(task.person_tracks))
        task.video_path, task.audio_path = str(mp4), str(wav)
        task.width, task.height, task.num_frames = pr.width, pr.height, n
        task.shot.start_s, task.shot.end_s = t0, t1
        task.start_s, task.end_s = t0, t1
        if i == SPEAKING_CLIP:
            sp = _energy_speaking(media.read_audio(wav), n)
            tr = task.person_tracks[0]
            task.alignment = Alignment(columns={0: {"speaking_score": sp[np.clip(tr.frame_idx, 0, n - 1)]}})
        WriteStage(root=str(root), run_id="fixture").process(task)
    (base / "READY").write_text("ok")
    return root


@pytest.fixture(scope="session")
def small_root(tmp_path_factory) -> Path:
    return build_small_root(tmp_path_factory.getbasetemp() / "talkset-small-root")


def _spec():
    from talkset.training.dataset import SampleSpec

    return SampleSpec(height=72, width=128, num_frames=4, max_people=3, audio_layers=2, audio_dim=16)


def test_splits_are_deterministic_and_hold_out_a_source(small_root):
    from talkset.training.splits import clips_in, make_splits, read_splits, splits_path

    t1 = make_splits(small_root, seed=0, write=False).to_pydict()
    t2 = make_splits(small_root, seed=0).to_pydict()
    assert splits_path(small_root).is_file()
    assert t1["split"] == t2["split"] and t1["clip_id"] == t2["clip_id"]
    by_source: dict[str, list[str]] = {}
    for src, s in zip(t2["source"], t2["split"]):
        by_source.setdefault(src, []).append(s)
    # 2 sources: one held out entirely (hard), the other keeps its first clip for training and
    # its last clip (in time) as easy test
    assert sorted(sorted(v) for v in by_source.values()) == [["test_easy", "train"], ["test_hard", "test_hard"]]
    assert all(n == 2 for n in t2["num_people"])
    sp = read_splits(small_root)
    assert set(clips_in(small_root, "test")) == {c for c, s in sp.items() if s != "train"}
    assert len(clips_in(small_root, "train")) == 1
    # another seed may pick the other source; the rule still holds
    t3 = make_splits(small_root, seed=1, write=False).to_pydict()
    assert sorted(t3["split"]) == ["test_easy", "test_hard", "test_hard", "train"]


def test_dataset_window_shapes_values_and_alignment(small_root):
    from talkset.storage.catalog import connect
    from talkset.training.dataset import TalkingClipDataset

    spec = _spec()
    ds = TalkingClipDataset(small_root, spec, audio_model="logmel")
    assert len(ds.clip_ids) == 4
    assert len(ds) == 4 * (75 // 4)  # non-overlapping windows of 4 frames over 75-frame clips
    speaking_clip = connect(small_root).execute(
        "SELECT DISTINCT clip_id FROM frames WHERE speaking_score IS NOT NULL").fetchone()[0]
    i = next(k for k, (c, st) in enumerate(ds.windows) if c != speaking_clip and st == 12)
    s = ds[i]
    H, W, F, P = 72, 128, 4, 3
    assert s["ref_image"].shape == (3, H, W) and s["target"].shape == (F, 3, H, W)
    assert s["pose_people"].shape == (F, P, 3, H, W) and s["pose_joint"].shape == (F, 3, H, W)
    assert s["face_masks"].shape == (F, P, H, W) and s["audio"].shape == (F, 2, 16)
    assert s["speaking"].shape == (F, P) and s["people_mask"].tolist() == [True, True, False]
    assert -1.0 <= float(s["target"].min()) and float(s["target"].max()) <= 1.0
    assert float(s["target"].std()) > 0.1  # real pixels, not a blank canvas
    # 640x360 letterboxed into 128x72: same 16:9 aspect, so no padding rows
    assert float((s["target"][:, :, 0, :] > -0.99).float().mean()) > 0.5
    # pose drawn for both people, and each per-person image is the joint image inside that box
    assert float(s["pose_joint"].sum()) > 0
    for p in range(2):
        pp = s["pose_people"][:, p]
        assert float(pp.sum()) > 0
        assert torch.all((pp == 0) | (pp == s["pose_joint"]))
    assert float(s["pose_people"][:, 2].abs().sum()) == 0
    # split screen: person 0 (left) lives in the left half, person 1 in the right half
    left = s["pose_people"][:, 0].sum(dim=(0, 1, 2))
    right = s["pose_people"][:, 1].sum(dim=(0, 1, 2))
    assert float(left[: W // 2].sum()) > 0.9 * float(left.sum())
    assert float(right[W // 2 :].sum()) > 0.9 * float(right.sum())
    # face masks: non-empty, a small part of the frame, inside the person's half
    for p in range(2):
        fm = s["face_masks"][:, p]
        area = float(fm.mean())
        assert 0.002 < area < 0.2, area
        cols = fm.sum(dim=(0, 1))
        half = cols[: W // 2] if p == 0 else cols[W // 2 :]
        assert float(half.sum()) == float(cols.sum())
    # no speaking scores in this clip -> NaN
    clip_id, start = ds.windows[i]
    assert torch.isnan(s["speaking"]).all()
    # the target frames are the clip's frames start..start+3
    assert s["frame_idx"].tolist() == list(range(start, start + 4))
    n_people = connect(small_root).execute("SELECT num_people FROM clips WHERE clip_id = ?", [clip_id]).fetchone()[0]
    assert n_people == 2
    # same index -> same sample (seeded reference frame)
    s2 = ds[i]
    assert s2["ref_idx"] == s["ref_idx"] and torch.equal(s2["ref_image"], s["ref_image"])


def test_dataset_speaking_scores_round_trip(small_root):
    from talkset.storage.catalog import connect
    from talkset.training.dataset import TalkingClipDataset

    spec = _spec()
    con = connect(small_root)
    cid = con.execute("SELECT DISTINCT clip_id FROM frames WHERE speaking_score IS NOT NULL").fetchall()
    assert len(cid) == 1
    cid = cid[0][0]
    rows = dict(con.execute("SELECT frame_idx, speaking_score FROM frames WHERE clip_id = ? AND track_id = 0", [cid]).fetchall())
    ds = TalkingClipDataset(small_root, spec, clip_ids=[cid], audio_model="logmel")
    w = ds.window(cid, 10, 0)
    for j, f in enumerate(range(10, 14)):
        want = rows.get(f)
        got = float(w["speaking"][j, 0])
        assert (math.isnan(got) if want is None else got == pytest.approx(want)), (f, want, got)
    assert set(float(v) for v in w["speaking"][:, 0]) <= {1.0, -1.0}
    assert torch.isnan(w["speaking"][:, 1]).all()


def test_logmel_audio_features_follow_the_audio(small_root):
    from talkset import media
    from talkset.training.audio_features import LogMelFeatures, audio_extractor
    from talkset.weights import WeightsNotFound

    wav_path = next((small_root / "clips").glob("*.wav"))
    wav = media.read_audio(wav_path)
    fx = LogMelFeatures(layers=2, dim=16, seed=0)
    a = fx(wav, num_frames=75)
    assert a.shape == (75, 2, 16) and a.dtype == np.float32 and np.isfinite(a).all()
    assert np.array_equal(a, LogMelFeatures(layers=2, dim=16, seed=0)(wav, num_frames=75))  # fixed projection
    assert not np.allclose(a, LogMelFeatures(layers=2, dim=16, seed=1)(wav, num_frames=75))
    # digital silence in the second half (from frame 37.5 on) gives one constant feature block
    # there (one frame of context either side), while the speech half varies from frame to frame
    quiet = wav.copy()
    quiet[len(quiet) // 2 :] = 0
    b = fx(quiet, num_frames=75)
    assert float(np.std(b[40:], axis=0).max()) < 1e-4
    assert float(np.std(b[:36], axis=0).mean()) > 0.1
    # speech frames differ from frame to frame (not a constant)
    assert np.std(a, axis=0).mean() > 0.1
    with pytest.raises(WeightsNotFound, match="wav2vec2 model not found at /nonexistent/w2v.*audio_model=.logmel"):
        audio_extractor("/nonexistent/w2v", 12, 768)


def test_wav2vec2_features_from_a_local_folder(small_root, tmp_path):
    """The wav2vec2 path with a small randomly initialised model saved in Hugging Face layout (no
    pretrained wav2vec2 exists here): loading from a folder, 12->L layer selection, 50 Hz -> 25 fps."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from talkset import media
    from talkset.training.audio_features import Wav2Vec2Features, audio_extractor

    torch.manual_seed(0)
    cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
                         conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    Wav2Vec2Model(cfg).save_pretrained(tmp_path / "w2v")
    wav = media.read_audio(next((small_root / "clips").glob("*.wav")))
    fx = Wav2Vec2Features(tmp_path / "w2v", layers=2)
    assert fx.shape == (2, 32)
    a = fx(wav, num_frames=75)
    assert a.shape == (75, 2, 32) and np.isfinite(a).all()
    # the last 2 of the 3 transformer layers, interpolated at frame centres: frame k at
    # (k + 0.5) / 25 s lies at wav2vec2 step 2k + 0.375 (step i is centred at 12.5 + 20 i ms)
    with torch.no_grad():
        x = torch.from_numpy(wav)
        x = (x - x.mean()) / (x.std() + 1e-7)
        hs = torch.stack(fx.model(x[None], output_hidden_states=True).hidden_states[1:], 2)[0, :, -2:].numpy()
    assert hs.shape[1:] == (2, 32) and abs(hs.shape[0] - 150) <= 1
    for k in (0, 10, 40):
        assert np.allclose(a[k], 0.625 * hs[2 * k] + 0.375 * hs[2 * k + 1], atol=1e-4)
    assert not np.allclose(a[10], a[11])
    with pytest.raises(ValueError, match="wants"):
        audio_extractor(tmp_path / "w2v", 12, 768)


def test_face_masks_seed_landmarks_by_default_detector_box_as_option(small_root):
    """``face_mask="landmarks"`` (default, the seed's) builds each face box from the person's
    keypoints kept inside the person box; ``"box"`` keeps the stored face box. On this root's real
    people-stage keypoints (17 COCO body points: the nose and ears stand in for face landmarks) the
    two masks differ, and each landmark mask lies inside its person's box."""
    from dataclasses import replace

    from talkset.training.dataset import TalkingClipDataset, box_mask

    spec = _spec()
    seed = TalkingClipDataset(small_root, spec, audio_model="logmel")
    box = TalkingClipDataset(small_root, replace(spec, face_mask="box"), audio_model="logmel")
    assert spec.face_mask == "landmarks"
    cid = seed.clip_ids[0]
    a, b = seed.window(cid, 10, 0), box.window(cid, 10, 0)
    assert not torch.equal(a["face_masks"], b["face_masks"])
    c = seed.clip(cid)
    for j, f in enumerate(a["frame_idx"].tolist()):
        for p in range(2):
            fm = a["face_masks"][j, p].numpy()
            assert fm.sum() > 0
            person = box_mask(c.boxes[p, f], fm.shape)
            assert float((fm * (1 - person)).sum()) <= 2 * fm.shape[1]  # inside, up to a rounding row
