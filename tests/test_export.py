"""Exports of a real root (the README demo, session fixture ``blackjournal_root``): WebDataset shards
read back with the ``webdataset`` loader, the MIT training layout checked the way MIT's
``HumanDanceVideoDataset`` (baseline_train/src/dataset/stage_two.py) reads it, and the Parquet
tables loaded with Hugging Face ``datasets`` offline."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from talkset.export.mit import export_mit, to_seed_scale
from talkset.export.webdataset import export_webdataset, read_frames
from talkset.storage.catalog import connect
from talkset.storage.root import DatasetRoot, read_table


@pytest.fixture(scope="module")
def demo_root(request) -> Path:
    """The collected demo root; ``TALKSET_TEST_ROOT`` may name an already collected root of the
    same clip to iterate without collecting again."""
    given = os.environ.get("TALKSET_TEST_ROOT")
    if given:
        return Path(given)
    root, _summary = request.getfixturevalue("blackjournal_root")
    return Path(root)


@pytest.fixture(scope="module")
def two_clip_root(demo_root, tmp_path_factory) -> Path:
    """A copy of the demo root with its clip committed a second time (media copied), plus a third
    committed clip whose media file is missing."""
    dst = tmp_path_factory.mktemp("export") / "root"
    shutil.copytree(demo_root, dst, symlinks=True)
    root = DatasetRoot(dst)
    clip = read_table(dst, "clips").to_pylist()[0]
    source = clip.pop("source")
    frames = read_table(dst, "frames")
    frames = frames.filter(pc.equal(frames.column("clip_id"), clip["clip_id"])).drop_columns(["source"])
    for i, media_ok in ((5, True), (6, False)):
        cid = f"{source}-s{i:04d}"
        row = {**clip, "clip_id": cid, "shot_idx": i, "video_path": f"clips/{cid}.mp4", "audio_path": f"clips/{cid}.wav"}
        if media_ok:
            shutil.copyfile(dst / clip["video_path"], dst / row["video_path"])
            shutil.copyfile(dst / clip["audio_path"], dst / row["audio_path"])
        root.commit_clip(source, cid, row, frames.set_column(0, "clip_id", pa.array([cid] * frames.num_rows)))
    return dst


def test_webdataset_shards_stream_back(two_clip_root, tmp_path):
    import webdataset as wds

    root = two_clip_root
    clips = {r["clip_id"]: r for r in read_table(root, "clips").to_pylist()}
    out = tmp_path / "wds"
    out.mkdir()
    (out / "talkset-000099.tar").write_bytes(b"stale shard of an earlier export")
    first = export_webdataset(root, out)  # 1 GiB shards: all samples in one shard
    assert len(first["shards"]) == 1 and first["shards"][0]["samples"] == len(clips) - 1
    # the clips are copies of one clip: a target of 1.5 samples gives one sample per shard
    shard_bytes = int(1.5 * first["shards"][0]["bytes"] / first["samples"])
    idx = export_webdataset(root, out, shard_bytes=shard_bytes)

    missing = [c for c in clips if c.endswith("-s0006")]
    assert [f["clip_id"] for f in idx["failed"]] == missing
    assert idx["samples"] == len(clips) - 1 == len(idx["shards"])
    assert sorted(p.name for p in out.glob("*.tar")) == [s["name"] for s in idx["shards"]]  # stale one replaced
    assert all(s["bytes"] <= shard_bytes for s in idx["shards"])
    fails = connect(root).execute("SELECT item, error FROM failures WHERE stage = 'export'").fetchall()
    assert [f[0] for f in fails] == missing and "media not readable" in fails[0][1]

    urls = [str(out / s["name"]) for s in idx["shards"]]
    seen = []
    con = connect(root)
    for sample in wds.WebDataset(urls, shardshuffle=False):
        meta = json.loads(sample["json"])
        cid = meta["clip_id"]
        seen.append(cid)
        assert sample["__key__"] == cid
        assert sample["mp4"] == (root / clips[cid]["video_path"]).read_bytes()
        assert sample["wav"][:4] == b"RIFF" and sample["wav"] == (root / clips[cid]["audio_path"]).read_bytes()
        frames = read_frames(sample["frames.parquet"])
        n, tracks = con.execute("SELECT count(*), list(DISTINCT track_id ORDER BY track_id) FROM frames WHERE clip_id = ?",
                                [cid]).fetchone()
        assert frames.num_rows == n == meta["frames_rows"] and meta["tracks"] == tracks
        assert meta["num_frames"] == clips[cid]["num_frames"] and meta["source"] == clips[cid]["source"]
        kp = frames.column("keypoints").to_pylist()
        assert len(kp[0]) == 133 and len(kp[0][0]) == 3
        ref = con.execute("SELECT speaking_score FROM frames WHERE clip_id = ? ORDER BY track_id, frame_idx",
                          [cid]).fetchall()
        assert frames.column("speaking_score").to_pylist() == pytest.approx([r[0] for r in ref], nan_ok=True)
    assert sorted(seen) == sorted(c for c in clips if c not in missing)

    # a compacted root exports the same samples
    from talkset.storage.compact import compact

    compact(root)
    again = export_webdataset(root, tmp_path / "wds2")
    def members(d, idx):
        return {s["__key__"]: (s["mp4"], read_frames(s["frames.parquet"])) for s in
                wds.WebDataset([str(d / x["name"]) for x in idx["shards"]], shardshuffle=False)}
    a, b = members(out, idx), members(tmp_path / "wds2", again)
    assert a.keys() == b.keys() and all(a[k][0] == b[k][0] and a[k][1].equals(b[k][1]) for k in a)


def _mit_read(entry: dict) -> dict:
    """What MIT's HumanDanceVideoDataset.__getitem__ / get_human_info do with one data-config
    entry (stage_two.py), without torch transforms: the paths, keys and shapes it relies on."""
    from PIL import Image

    infos = json.loads(Path(entry["speak_info_path"]).read_text())
    start, end = infos[0]["clip_range"]
    img_path, kps_path = entry["image_dir"], entry["pose_dir"]
    img_list = sorted(os.path.join(img_path, n) for n in os.listdir(img_path))[start - 1:end]
    pose_list = sorted(os.path.join(kps_path, n) for n in os.listdir(kps_path))[start - 1:end]
    assert len(img_list) == len(pose_list)
    sizes = {Image.open(p).size for p in img_list[:3] + pose_list[:3]}
    pose_json_dir = img_path.replace("frames", "pose")
    names = sorted(n for n in os.listdir(pose_json_dir) if n.endswith(".json"))
    frame_pose_list, matched_tracks = [], []
    for name in names[: len(img_list)]:
        pose_list_f = json.loads(Path(pose_json_dir, name).read_text())["instance_info"]
        order, tids = [], []
        for info in infos:
            x1, y1, x2, y2 = info["instance_bbox"]
            counts = [sum(1 for (x, y), s in zip(p["keypoints"], p["keypoint_scores"]) if s >= 0.4 and x1 <= x <= x2
                          and y1 <= y <= y2) for p in pose_list_f]
            m = int(np.argmax(counts))
            order.append(pose_list_f[m]["keypoints"])
            own = [p["track_id"] for p in pose_list_f].index(info["track_id"])
            tids.append((info["track_id"], pose_list_f[m]["track_id"], counts[own] > max(counts[:own] + counts[own + 1:])))
        frame_pose_list.append(order)
        matched_tracks.append(tids)
    poses = np.array(frame_pose_list).transpose(1, 0, 2, 3)  # (human, frame, 133, 2)
    scores = [[info["speaking_score"][i] for i in range(len(img_list))] for info in infos]
    return {"infos": infos, "n": len(img_list), "sizes": sizes, "poses": poses, "scores": np.asarray(scores) / 3,
            "matched": matched_tracks}


def test_mit_layout_reads_like_the_mit_dataset_class(two_clip_root, tmp_path):
    import torch

    root = two_clip_root
    clip_id = min(r["clip_id"] for r in read_table(root, "clips").to_pylist())
    out = tmp_path / "mit"
    n_frames = 6
    summary = export_mit(root, out, clip_ids=[clip_id], max_frames=n_frames)
    assert [c["clip_id"] for c in summary["clips"]] == [clip_id] and not summary["failed"]
    assert "ABSENT" in summary["audio_embeddings"] and "no audio_features table" in summary["audio_embeddings"]
    config = json.loads((out / "train.json").read_text())
    assert len(config) == 1 and set(config[0]) == {"image_dir", "pose_dir", "speak_info_path", "audio_embedding_path"}
    entry = config[0]
    assert not Path(entry["audio_embedding_path"]).exists()

    got = _mit_read(entry)
    con = connect(root)
    tracks = [r[0] for r in con.execute("SELECT DISTINCT track_id FROM frames WHERE clip_id = ? ORDER BY 1",
                                        [clip_id]).fetchall()]
    assert got["n"] == n_frames and got["sizes"] == {(1920, 1080)}
    assert got["poses"].shape == (len(tracks), n_frames, 133, 2)
    assert [i["track_id"] for i in got["infos"]] == tracks
    for info in got["infos"]:
        assert info["clip_range"] == [1, n_frames] and len(info["speaking_score"]) == n_frames
        x1, y1, x2, y2 = info["instance_bbox"]
        assert 0 <= x1 < x2 <= 1920 and 0 <= y1 < y2 <= 1080
    # the class's keypoints-in-box match: a person whose own pose has the most confident points in
    # their instance box gets that pose (the poses carry the track ids; see talkset.export.mit on the
    # frames where a person seen from behind loses that match)
    decided = [(want, found) for frame in got["matched"] for want, found, own_best in frame if own_best]
    assert decided and all(w == f for w, f in decided)
    # speaking scores: the seed's logit scale, same sign as talkset's score, / 3 as in training
    ref = con.execute("SELECT track_id, frame_idx, speaking_score FROM frames WHERE clip_id = ? AND frame_idx < ? "
                      "ORDER BY 1, 2", [clip_id, n_frames]).fetchall()
    raw = np.array([[r[2] if r[2] is not None else np.nan for r in ref if r[0] == t] for t in tracks], dtype=np.float64)
    assert np.allclose(got["scores"] * 3, np.round(to_seed_scale(raw), 4))
    assert (np.sign(got["scores"]) == np.sign(np.nan_to_num(raw))).all()
    assert np.abs(got["scores"] * 3).max() <= 6.91
    # keypoints are in the 1920 x 1080 letterboxed frame: x scaled by the same factor as the box
    c = con.execute("SELECT width, height FROM clips WHERE clip_id = ?", [clip_id]).fetchone()
    scale = min(1080 / c[1], 1920 / c[0])
    kp = con.execute("SELECT keypoints[6] FROM frames WHERE clip_id = ? AND track_id = ? AND frame_idx = 0",
                     [clip_id, tracks[0]]).fetchone()[0]
    pose_dir = Path(entry["image_dir"].replace("frames", "pose"))
    inst = json.loads(min(pose_dir.glob("*.json")).read_text())["instance_info"]
    mine = next(i for i in inst if i["track_id"] == tracks[0])
    assert len(inst) == len(tracks) and len(mine["keypoints"]) == len(mine["keypoint_scores"]) == 133
    if kp is not None:
        assert mine["keypoints"][5][0] == pytest.approx(kp[0] * scale + (1920 - c[0] * scale) / 2, abs=0.02)
        assert mine["keypoints"][5][1] == pytest.approx(kp[1] * scale + (1080 - c[1] * scale) / 2, abs=0.02)

    # with wav2vec2 rows in the audio_features table, the embedding is written (n, layers, dim)
    row = con.execute("SELECT source, num_frames FROM clips WHERE clip_id = ?", [clip_id]).fetchone()
    feats = np.random.default_rng(0).standard_normal((row[1], 2, 8)).astype("<f4")
    d = root / "tables" / "audio_features" / f"source={row[0]}"
    d.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([{"clip_id": clip_id, "model": "wav2vec2-base-960h-2x8", "num_frames": row[1],
                                          "layers": 2, "dim": 8, "features": feats.tobytes()}]), d / "a.parquet")
    try:
        summary = export_mit(root, out, clip_ids=[clip_id], max_frames=n_frames)
    finally:
        shutil.rmtree(root / "tables" / "audio_features")
    assert summary["audio_embeddings"].startswith("wav2vec2 embeddings for all 1 clips")
    emb = torch.load(json.loads((out / "train.json").read_text())[0]["audio_embedding_path"])
    assert emb.shape == (n_frames, 2, 8) and torch.equal(emb, torch.from_numpy(feats[:n_frames]))
    assert not list(out.glob(".tmp-*"))


def test_mit_export_refuses_a_path_with_frames(two_clip_root, tmp_path):
    with pytest.raises(ValueError, match="frames"):
        export_mit(two_clip_root, tmp_path / "frames-out")


def test_export_command(two_clip_root, tmp_path, capsys):
    from talkset.cli import main

    out = tmp_path / "cli-wds"
    assert main(["export", "--format", "webdataset", "--shard-size", "1GiB", str(two_clip_root), str(out)]) == 0
    idx = json.loads((out / "index.json").read_text())
    assert f"wrote {idx['samples']} samples in 1 shards" in capsys.readouterr().out and idx["shard_bytes"] == 2**30
    with pytest.raises(SystemExit):
        main(["export", "--format", "webdataset", "--shard-size", "lots", str(two_clip_root), str(out)])


def test_hugging_face_datasets_loads_the_tables_offline(demo_root, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    from datasets import load_dataset

    files = [str(p) for p in DatasetRoot(demo_root).shard_files("frames")]
    ds = load_dataset("parquet", data_files={"train": files}, split="train", cache_dir=str(tmp_path / "cache"))
    ref = read_table(demo_root, "frames")
    assert ds.num_rows == ref.num_rows
    assert {"clip_id", "track_id", "frame_idx", "keypoints", "speaking_score"} <= set(ds.column_names)
    i = pc.index(pc.is_valid(ref.column("keypoints")), True).as_py()  # ds keeps the files' row order
    first, row = ds[i], ref.slice(i, 1).to_pylist()[0]
    assert (first["clip_id"], first["track_id"], first["frame_idx"]) == (row["clip_id"], row["track_id"], row["frame_idx"])
    assert len(first["keypoints"]) == 133 and np.allclose(np.array(first["keypoints"]), np.array(row["keypoints"]))
    assert sum(v is None for v in ds["speaking_score"]) == ref.column("speaking_score").null_count
    assert first["speaking_score"] == pytest.approx(row["speaking_score"], nan_ok=True)
