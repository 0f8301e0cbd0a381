"""Exports of a dataset root for other trainers: WebDataset tar shards (:mod:`.webdataset`) and the
layout the official MIT training code reads (:mod:`.mit`). ``talkset export --format ...``."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa


def committed_clips(root: str | os.PathLike, clip_ids: list[str] | None = None) -> tuple[list[dict], object]:
    """The committed ``clips`` rows (ordered by clip id; only ``clip_ids`` when given) and an open
    DuckDB connection over the root (:func:`talkset.storage.catalog.connect`).

    Raises ``FileNotFoundError`` when ``root`` has no ``tables/`` folder, ``KeyError`` naming the
    clip ids that are not committed."""
    from talkset.storage.catalog import connect

    if not (Path(root) / "tables").is_dir():
        raise FileNotFoundError(f"{root}: not a dataset root (no tables/ folder)")
    con = connect(root)
    cur = con.execute("SELECT * FROM clips ORDER BY clip_id")
    cols = [d[0] for d in cur.description]
    rows = [dict(zip(cols, r)) for r in cur.fetchall()]
    if clip_ids:
        known = {r["clip_id"] for r in rows}
        missing = [c for c in clip_ids if c not in known]
        if missing:
            raise KeyError(f"not committed clips in {root}: {missing}")
        rows = [r for r in rows if r["clip_id"] in set(clip_ids)]
    return rows, con


def clip_frames(con, clip_id: str) -> pa.Table:
    """The clip's ``frames`` rows (the schema's columns, without ``source``), ordered by
    (track_id, frame_idx)."""
    from talkset.storage import schema as S

    tbl = con.sql("SELECT * FROM frames WHERE clip_id = $1 ORDER BY track_id, frame_idx", params=[clip_id]).to_arrow_table()
    cols = []
    for f in S.FRAMES:
        cols.append(tbl.column(f.name).cast(f.type) if f.name in tbl.column_names else pa.nulls(tbl.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=S.FRAMES)
