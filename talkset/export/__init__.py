"""Exports of a dataset root for other trainers: WebDataset tar shards (:mod:`.webdataset`) and the
layout the official MIT training code reads (:mod:`.mit`). ``talkset export --format ...``."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa


def committed_clips(root: str | os.PathLike, clip_ids: list[str] | None = None) -> tuple[list[dict], object]:
    """The committed ``clips`` rows (ordered by source, clip id; only ``clip_ids`` when given) and an open
    DuckDB connection over the root (:func:`talkset.storage.catalog.connect`).

    Raises ``FileNotFoundError`` when ``root`` has no ``tables/`` folder, ``KeyError`` naming the
    clip ids that are not committed."""
    from talkset.storage.catalog import connect

    if not (Path(root) / "tables").is_dir():
        raise FileNotFoundError(f"{root}: not a dataset root (no tables/ folder)")
    con = connect(root)
    cur = con.execute("SELECT * FROM clips ORDER BY clip_id")
    cols = [d[0] for d in cur.description]
    rows = sorted((dict(zip(cols, r)) for r in cur.fetchall()), key=lambda r: (str(r.get("source")), r["clip_id"]))
    if clip_ids:
        known = {r["clip_id"] for r in rows}
        missing = [c for c in clip_ids if c not in known]
        if missing:
            raise KeyError(f"not committed clips in {root}: {missing}")
        rows = [r for r in rows if r["clip_id"] in set(clip_ids)]
    return rows, con


class FramesReader:
    """A clip's ``frames`` rows, read one source partition at a time.

    A query per clip through the ``frames`` view scans every shard of the root (the clip id is not
    in the path), so at MIT's size (2,880 clips) each would cost about as much as a full scan; this
    reads ``tables/frames/source=<id>/`` once (per-clip shards or a compacted file, older shards'
    missing columns as nulls) and keeps the last source in memory.
    """

    def __init__(self, root: str | os.PathLike):
        from talkset.storage.root import DatasetRoot

        self.droot = DatasetRoot(root)
        self._source: str | None = None
        self._table: pa.Table | None = None

    def _load(self, source: str) -> pa.Table:
        import pyarrow.dataset as ds

        from talkset.storage import schema as S

        d = self.droot.table_dir("frames", source)
        files = sorted(str(p) for p in d.glob("*.parquet") if not p.name.startswith(".")) if d.is_dir() else []
        if not files:
            return S.FRAMES.empty_table()
        return ds.dataset(files, format="parquet", schema=S.FRAMES).to_table()

    def clip(self, source: str, clip_id: str) -> pa.Table:
        """The clip's ``frames`` rows (the schema's columns, without ``source``), ordered by
        (track_id, frame_idx)."""
        import pyarrow.compute as pc

        if source != self._source:
            self._table, self._source = self._load(source), source
        tbl = self._table.filter(pc.equal(self._table.column("clip_id"), clip_id))
        return tbl.sort_by([("track_id", "ascending"), ("frame_idx", "ascending")])
