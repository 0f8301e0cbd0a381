"""``talkset export --format webdataset ROOT OUT``: tar shards for streaming training at scale.

One WebDataset sample per committed clip, written with the ``webdataset`` library's
``ShardWriter`` (webdataset 1.0.2) so that ``webdataset.WebDataset(urls)`` reads them back:

========================  ====================================================================
member                    content
========================  ====================================================================
``<key>.mp4``             the clip as collected (25 fps H.264), bytes
``<key>.wav``             its 16 kHz mono PCM WAV, bytes
``<key>.frames.parquet``  the clip's ``frames`` rows (every column of
                          :data:`talkset.storage.schema.FRAMES`, ordered by track_id, frame_idx),
                          a Parquet file; :func:`read_frames` turns the bytes into a table
``<key>.json``            the clip's ``clips`` row (with ``source``), ``tracks`` (track ids) and
                          ``frames_rows``
========================  ====================================================================

``<key>`` is the clip id with ``.`` replaced by ``_`` (WebDataset splits a member's name at its
first dot); the JSON keeps the real clip id. Shards are ``OUT/talkset-%06d.tar``; a new shard starts
before a sample would take the current one past ``shard_bytes`` (ShardWriter's ``maxsize``), so a
shard is at most ``shard_bytes`` unless a single clip is larger. ``OUT/index.json`` lists the
shards with their sample counts and sizes, and the clips that could not be exported.

Writing is atomic per export: shards go to ``OUT/.tmp-<uuid>/`` and are renamed into ``OUT`` when
all are written, replacing any shards of an earlier export there (``talkset-*.tar`` not written by
this run are removed), so ``OUT`` never mixes two exports. A clip whose media file is missing or
unreadable is skipped with an entry in the index and a ``failures`` row (stage ``export``) in the
root; the export goes on.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import uuid
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from . import FramesReader, committed_clips

PATTERN = "talkset-%06d.tar"
DEFAULT_SHARD_BYTES = 1 << 30  # 1 GiB


def _jsonable(v):
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    return v


def sample_key(clip_id: str) -> str:
    return clip_id.replace(".", "_")


def read_frames(data: bytes) -> pa.Table:
    """A sample's ``frames.parquet`` bytes -> the clip's ``frames`` rows as a pyarrow table."""
    return pq.read_table(io.BytesIO(data))


def _parquet_bytes(tbl: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(tbl, buf, compression="zstd")
    return buf.getvalue()


def export_webdataset(
    root: str | os.PathLike,
    out: str | os.PathLike,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    clip_ids: list[str] | None = None,
    run_id: str = "export",
) -> dict:
    """Write the root's committed clips as WebDataset shards into ``out``; returns the index.

    ``shard_bytes``: target shard size in bytes (> 0). ``clip_ids``: only these clips.
    Returns (and writes to ``out/index.json``) ``{"shards": [{"name", "samples", "bytes"}],
    "samples": n, "failed": [{"clip_id", "error"}], "shard_bytes": ...}``.
    """
    import webdataset as wds

    from talkset.storage.root import DatasetRoot

    if shard_bytes <= 0:
        raise ValueError(f"shard_bytes must be > 0, got {shard_bytes}")
    droot = DatasetRoot(root)
    rows, _con = committed_clips(droot.root, clip_ids)
    reader = FramesReader(droot.root)
    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    failed: list[dict] = []
    counts: dict[int, int] = {}
    try:
        with wds.ShardWriter(str(tmp / PATTERN), maxcount=10**9, maxsize=shard_bytes, verbose=0) as sink:
            for row in rows:
                cid = row["clip_id"]
                try:
                    video = (droot.root / row["video_path"]).read_bytes()
                    audio = (droot.root / row["audio_path"]).read_bytes()
                except (OSError, TypeError) as exc:
                    err = f"clip media not readable: {exc}"
                    failed.append({"clip_id": cid, "error": err})
                    droot.write_failure(str(row.get("source") or "unknown"), "export", cid, err, run_id)
                    continue
                frames = reader.clip(str(row["source"]), cid)
                meta = {k: _jsonable(v) for k, v in row.items()}
                meta["tracks"] = sorted(set(frames.column("track_id").to_pylist()))
                meta["frames_rows"] = frames.num_rows
                sample = {
                    "__key__": sample_key(cid),
                    "mp4": video,
                    "wav": audio,
                    "frames.parquet": _parquet_bytes(frames),
                    "json": json.dumps(meta, sort_keys=True).encode(),
                }
                size = sum(len(v) + 1024 for k, v in sample.items() if k != "__key__")  # + tar header, padding
                # ShardWriter only checks the size after a write: start the next shard first when this
                # sample would take the current one past the target
                if sink.tarstream is not None and sink.count > 0 and sink.size + size > shard_bytes:
                    sink.next_stream()
                sink.write(sample)
                counts[sink.shard - 1] = counts.get(sink.shard - 1, 0) + 1
        written = sorted(tmp.glob("talkset-*.tar"))
        shards = []
        for p in written:
            idx = int(p.stem.split("-")[1])
            if counts.get(idx, 0) == 0:  # an empty trailing shard
                p.unlink()
                continue
            shards.append({"name": p.name, "samples": counts[idx], "bytes": p.stat().st_size})
        keep = {s["name"] for s in shards}
        for s in shards:
            os.replace(tmp / s["name"], out / s["name"])
        for old in out.glob("talkset-*.tar"):
            if old.name not in keep:
                old.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    index = {"format": "webdataset", "root": str(droot.root), "shard_bytes": int(shard_bytes), "shards": shards,
             "samples": sum(s["samples"] for s in shards), "failed": failed,
             "members": ["mp4", "wav", "frames.parquet", "json"]}
    itmp = out / f".tmp-{uuid.uuid4().hex}-index.json"
    itmp.write_text(json.dumps(index, indent=1))
    os.replace(itmp, out / "index.json")
    return index
