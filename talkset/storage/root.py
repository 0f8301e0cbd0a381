"""A dataset root: its layout, its one atomic shard writer, and the state a run resumes from.

Every table of :mod:`talkset.storage.schema` is written through :meth:`DatasetRoot.write_shard`:
the shard goes to a hidden temporary name in its final folder (``.tmp-<uuid>-<name>.partial``,
which no ``*.parquet`` glob of the catalog matches), then ``os.replace``-s into place, so a crash
leaves either the old shard or the new one, never a partial file a query could read.

A clip is committed when its ``clips`` shard is renamed into place. Its ``frames`` shard is
written first (same file name, so a re-run overwrites rather than duplicates); the catalog only
shows frames of committed clips, so a crash between the two leaves nothing visible half-written.
Resume questions (is this clip committed, is this source complete) are answered here.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from talkset import provenance

from . import schema as S

TMP_PREFIX = ".tmp-"
TMP_SUFFIX = ".partial"
COMPACTED = "compacted"  # stem of a source's compacted shard (talkset.storage.compact)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name)


class DatasetRoot:
    """Paths of a dataset root and the shard writer.

    ``root/videos`` sources, ``root/clips`` clip media, ``root/tables/<t>/source=<id>/`` shards,
    ``root/_runs`` run summaries.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()

    # -- layout -----------------------------------------------------------------------------
    @property
    def videos(self) -> Path:
        return self.root / "videos"

    @property
    def clips_dir(self) -> Path:
        return self.root / "clips"

    @property
    def runs_dir(self) -> Path:
        return self.root / "_runs"

    def table_dir(self, table: str, source_id: str | None = None) -> Path:
        """``tables/<table>/source=<id>`` (``tables/<table>`` for unpartitioned tables)."""
        if table in S.UNPARTITIONED or source_id is None:
            return self.root / "tables" / table
        return self.root / "tables" / table / f"source={_safe(source_id)}"

    def shard_path(self, table: str, source_id: str, part: str) -> Path:
        return self.table_dir(table, source_id) / f"{_safe(part)}.parquet"

    def make_dirs(self) -> None:
        for d in (self.videos, self.clips_dir, self.runs_dir):
            d.mkdir(parents=True, exist_ok=True)
        for t in S.TABLES:
            (self.root / "tables" / t).mkdir(parents=True, exist_ok=True)

    # -- state ------------------------------------------------------------------------------
    def clip_committed(self, source_id: str, clip_id: str) -> bool:
        return self.shard_path("clips", source_id, clip_id).is_file() or clip_id in self.compacted_clip_ids(source_id)

    def shots_committed(self, source_id: str) -> bool:
        return self.shard_path("shots", source_id, "shots").is_file()

    def committed_clip_ids(self, source_id: str) -> set[str]:
        d = self.table_dir("clips", source_id)
        shards = {p.stem for p in d.glob("*.parquet") if not p.name.startswith(".")} if d.is_dir() else set()
        return (shards - {COMPACTED}) | self.compacted_clip_ids(source_id)

    def committed_clip_row(self, source_id: str, clip_id: str) -> dict | None:
        """The ``clips`` row of a committed clip, or ``None`` when it is not committed."""
        path = self.shard_path("clips", source_id, clip_id)
        if not path.is_file():
            rows = self._compacted_rows("clips", source_id, [("clip_id", "=", clip_id)])
            return rows[0] if rows else None
        return pq.read_table(path).to_pylist()[0]

    # -- compacted tables (talkset.storage.compact): tables/<t>/source=<id>/compacted.parquet --
    def compacted_clip_ids(self, source_id: str) -> set[str]:
        """Clip ids in the source's compacted ``clips`` file (its manifest of committed clips)."""
        path = self.shard_path("clips", source_id, COMPACTED)
        return set(pq.read_table(path, columns=["clip_id"]).column(0).to_pylist()) if path.is_file() else set()

    def _compacted_rows(self, table: str, source_id: str, filters: list) -> list[dict]:
        path = self.shard_path(table, source_id, COMPACTED)
        return pq.read_table(path, filters=filters).to_pylist() if path.is_file() else []

    def _drop_compacted_failures(self, source_id: str, keep) -> None:
        """Rewrite the source's compacted ``failures`` file with the rows ``keep(row)`` accepts
        (atomically; removed when none is left)."""
        path = self.shard_path("failures", source_id, COMPACTED)
        if not path.is_file():
            return
        tbl = pq.read_table(path)
        rows = tbl.to_pylist()
        kept = [r for r in rows if keep(r)]
        if len(kept) == len(rows):
            return
        if kept:
            meta = {k.decode()[len("talkset."):]: v.decode() for k, v in (tbl.schema.metadata or {}).items()
                    if k.startswith(b"talkset.") and k not in (b"talkset.version", b"talkset.written_at")}
            self.write_shard("failures", source_id, COMPACTED, kept, meta)
        else:
            path.unlink(missing_ok=True)

    def source_complete(self, source_id: str) -> bool:
        """A source is done when its ``shots`` shard is committed, no shot ended in an error and
        every clip it lists is committed."""
        if not self.shots_committed(source_id):
            return False
        shots = self.shot_rows(source_id).values()
        committed = self.committed_clip_ids(source_id)
        listed = lambda s: s.get("clip_ids") or ([s["clip_id"]] if s["clip_id"] else [])  # noqa: E731
        return not any(s["reason"].startswith("error:") or set(listed(s)) - committed for s in shots)

    def shot_rows(self, source_id: str) -> dict[int, dict]:
        """The committed ``shots`` rows of a source by ``shot_idx`` (``{}`` when none; shards
        written before ``clip_ids`` existed read with ``clip_ids`` / ``rejected`` absent)."""
        path = self.shard_path("shots", source_id, "shots")
        if not path.is_file():
            return {}
        return {r["shot_idx"]: r for r in pq.read_table(path).to_pylist()}

    def shard_files(self, table: str) -> list[Path]:
        """Every committed shard of ``table`` (temporary files excluded), sorted."""
        base = self.root / "tables" / table
        return sorted(p for p in base.rglob("*.parquet") if not p.name.startswith(".")) if base.is_dir() else []

    def count_rows(self, table: str) -> int:
        """Rows over every committed shard of ``table`` (from the Parquet footers)."""
        return sum(pq.ParquetFile(p).metadata.num_rows for p in self.shard_files(table))

    def remove_stray_tmp(self) -> int:
        """Delete temporary files left by a crashed run (and finish or undo an interrupted
        compaction, :func:`talkset.storage.compact.recover`); returns how many were removed."""
        from .compact import recover

        n = recover(self)["removed"]
        base = self.root / "tables"
        if base.is_dir():
            for p in base.rglob(f"{TMP_PREFIX}*"):
                p.unlink(missing_ok=True)
                n += 1
        if self.clips_dir.is_dir():
            for p in self.clips_dir.glob(f"{TMP_PREFIX}*"):
                p.unlink(missing_ok=True)
                n += 1
        return n

    # -- writing ----------------------------------------------------------------------------
    def write_shard(
        self,
        table: str,
        source_id: str | None,
        part: str,
        rows: pa.Table | list[dict],
        metadata: dict | None = None,
    ) -> Path:
        """Write one shard atomically (temp file + ``os.replace``). Returns its final path.

        ``table``: a name of :data:`talkset.storage.schema.SCHEMAS`; ``source_id``: the partition
        (ignored for unpartitioned tables); ``part``: the shard's file stem.
        ``rows``: a pyarrow table or a list of dicts, with the columns of ``talkset.storage.schema``
        (missing columns become nulls; extra columns raise ``KeyError``). ``metadata`` values are
        stored as ``talkset.<key>`` in the Parquet footer, with the talkset version and the time.
        """
        sch = S.SCHEMAS[table]
        if isinstance(rows, list):
            unknown = {k for r in rows for k in r} - set(sch.names)
            if unknown:
                raise KeyError(f"{table}: unknown columns {sorted(unknown)}")
            tbl = pa.Table.from_pylist(rows, schema=sch)
        else:
            tbl = rows.select(sch.names).cast(sch) if rows.schema != sch else rows
        meta = {
            b"talkset.version": provenance.version("talkset").encode(),
            b"talkset.written_at": datetime.now(timezone.utc).isoformat().encode(),
        }
        for k, v in (metadata or {}).items():
            meta[f"talkset.{k}".encode()] = (v if isinstance(v, str) else json.dumps(v, sort_keys=True)).encode()
        tbl = tbl.replace_schema_metadata({**(tbl.schema.metadata or {}), **meta})
        final = self.shard_path(table, source_id, part)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}-{final.name}{TMP_SUFFIX}"  # never matches *.parquet
        try:
            pq.write_table(tbl, tmp, compression="zstd")
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()
        return final

    def commit_clip(
        self,
        source_id: str,
        clip_id: str,
        clip_row: dict,
        frame_rows: pa.Table | list[dict],
        metadata: dict | None = None,
    ) -> None:
        """Write a clip's ``frames`` shard, then its ``clips`` shard (the commit point)."""
        self.write_shard("frames", source_id, clip_id, frame_rows, metadata)
        self.write_shard("clips", source_id, clip_id, [clip_row], metadata)

    def write_failure(self, source_id: str, stage: str, item: str, error: str, run_id: str) -> Path:
        """Record a failure. One shard per (stage, item): a repeat overwrites, never duplicates."""
        row = {
            "stage": stage,
            "item": item,
            "error": error,
            "time": datetime.now(timezone.utc),
            "run_id": run_id,
        }
        key = f"{stage}-{re.sub(r'[^A-Za-z0-9_-]+', '_', item)[-80:]}-{uuid.uuid5(uuid.NAMESPACE_URL, item).hex[:8]}"
        self._drop_compacted_failures(source_id, lambda r: (r["stage"], r["item"]) != (stage, item))
        return self.write_shard("failures", source_id, key, [row])

    def clear_failures(self, source_id: str, stage: str | None = None) -> None:
        """Remove a source's failure rows (all, or one stage's) before it is retried."""
        d = self.table_dir("failures", source_id)
        if d.is_dir():
            for p in d.glob("*.parquet"):
                if stage is None or p.name.startswith(f"{stage}-"):
                    p.unlink(missing_ok=True)
            if stage is not None:
                self._drop_compacted_failures(source_id, lambda r: r["stage"] != stage)

    def write_run(self, run_id: str, summary: dict) -> Path:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        final = self.runs_dir / f"{run_id}.json"
        tmp = self.runs_dir / f"{TMP_PREFIX}{run_id}.json"
        tmp.write_text(json.dumps(summary, indent=2, default=str))
        os.replace(tmp, final)
        return final


def read_table(root: str | os.PathLike, table: str) -> pa.Table:
    """Read a whole table (with its ``source`` column) through pyarrow datasets."""
    import pyarrow.dataset as ds

    droot = DatasetRoot(root)
    base = droot.root / "tables" / table
    files = [str(p) for p in droot.shard_files(table)]
    if not files:
        return S.empty(table)
    part = ds.partitioning(pa.schema([("source", pa.string())]), flavor="hive")
    dataset = ds.dataset(files, format="parquet", partitioning=part, partition_base_dir=str(base), schema=S.with_source(table))
    return dataset.to_table()
