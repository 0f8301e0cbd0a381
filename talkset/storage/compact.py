"""``talkset compact ROOT``: one Parquet file per table and source instead of one shard per clip.

A collection writes one ``frames`` and one ``clips`` shard per clip and one ``failures`` shard per
failed item (:mod:`talkset.storage.root`), so a finished dataset of MIT's size (12 h, ~2,900 clips)
is thousands of small files; DuckDB then spends its time opening files and reading footers.
Compaction rewrites, per source, every committed shard of :data:`COMPACTED_TABLES` into
``tables/<table>/source=<id>/compacted.parquet`` (``shots`` is already one shard per source).
Rows are not changed: old shards that lack a newer column get nulls there (as the catalog's
``union_by_name`` shows them), the columns keep :mod:`talkset.storage.schema`'s order.

What keeps working afterwards (:class:`talkset.storage.root.DatasetRoot`):

- resume: the compacted ``clips`` file is the source's manifest of committed clips;
  ``clip_committed``, ``committed_clip_ids``, ``committed_clip_row`` and ``source_complete`` read
  it together with any per-clip shard written later, so a re-run skips compacted clips;
- failure keys: ``write_failure`` drops a compacted row with the same (stage, item) before it writes
  the new shard, ``clear_failures`` rewrites (or removes) the compacted file, so a repeat still
  overwrites and never duplicates;
- a later ``compact`` folds new per-clip shards into the existing compacted file.

Only ``frames`` shards of committed clips are compacted; a ``frames`` shard whose ``clips`` shard
was never written (a crash between the two) stays where it is, invisible, until a re-run
overwrites it.

Crash safety, per source (a journal, then idempotent roll-forward):

1. each table's new file is written under a hidden name (``.compact-<uuid>-<table>.partial`` in
   the partition folder; no ``*.parquet`` glob matches it, :meth:`DatasetRoot.remove_stray_tmp`
   does not touch it);
2. the journal ``root/_compact/<source>.json`` (the hidden files and the shards each replaces) is
   written to a temporary name and renamed: this is the commit point;
3. per table, the hidden file is renamed to ``compacted.parquet``, then the replaced shards are
   unlinked; then the journal is removed.

A crash before 2 leaves every shard as it was (the hidden files are deleted by recovery); a crash
after 2 is rolled forward by :func:`recover`, which ``compact`` runs first and which
:meth:`DatasetRoot.remove_stray_tmp` (the start of every ``collect``) runs too. Each step of 3 can be
repeated, so a crash during recovery is recovered the same way. Between 2 and the end of 3 a query
can see a source's rows twice (the new file is in place, old shards not yet unlinked): milliseconds
normally, or until recovery after a crash there. Each compacted file carries its compaction's id
(``talkset.compaction_id``, also in the journal): if a recovery run by another process (a
``collect`` starting) deletes the hidden files before they are renamed, the roll-forward sees that
the file in place is not the new one, unlinks nothing, drops the journal and reports the source as
failed. Do not compact a source while a ``collect`` is writing it (compaction takes no lock
against the flow).

A source that cannot be compacted (an unreadable shard, a column whose type cannot be cast) is
left as it was, gets a ``failures`` row (stage ``compact``), and the other sources go on.

Footer metadata: keys whose value is the same in every input shard (models, versions) are kept as
they are; the per-shard rest (run ids, write times) is kept under ``talkset.compacted_parts`` as
``{part: {key: value}}``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from . import schema as S
from .compact_manifest import write_manifest
from .root import COMPACTED, DatasetRoot

#: the tables compaction rewrites (``shots`` is one shard per source already)
COMPACTED_TABLES = ("clips", "frames", "failures")
JOURNAL_DIR = "_compact"
HIDDEN_PREFIX = ".compact-"
HIDDEN_SUFFIX = ".partial"
ROWS_PER_GROUP = 131_072  # Parquet row group of the compacted files (DuckDB reads row groups in parallel)
PARTS_KEY = "talkset.compacted_parts"
ID_KEY = b"talkset.compaction_id"  # the uuid of the compaction that wrote a compacted file (also in its journal)
SKIP_META = (b"talkset.written_at",)


class CompactError(RuntimeError):
    """A source's shards could not be compacted (the message names the shard)."""


@dataclass
class SourceResult:
    source: str
    status: str  # "compacted" | "already compact" | "failed: <error>"
    files_before: int = 0
    files_after: int = 0
    rows: dict = field(default_factory=dict)  # table -> rows in the compacted file
    seconds: float = 0.0


def _journal_path(root: DatasetRoot, part_dir: str) -> Path:
    return root.root / JOURNAL_DIR / f"{part_dir}.json"


def _partition_dirs(root: DatasetRoot) -> list[str]:
    """``source=<id>`` folder names that hold shards of any compacted table, sorted."""
    names: set[str] = set()
    for table in COMPACTED_TABLES:
        base = root.root / "tables" / table
        if base.is_dir():
            names.update(p.name for p in base.iterdir() if p.is_dir() and p.name.startswith("source="))
    return sorted(names)


def _parquet_files(d: Path) -> list[Path]:
    return sorted(p for p in d.glob("*.parquet") if not p.name.startswith(".")) if d.is_dir() else []


def _plan(root: DatasetRoot, part_dir: str) -> dict[str, list[Path]]:
    """Input files per table for one source: every committed shard (the compacted file first)."""
    plan: dict[str, list[Path]] = {}
    clips = _parquet_files(root.root / "tables" / "clips" / part_dir)
    committed = {p.stem for p in clips if p.stem != COMPACTED}
    for table in COMPACTED_TABLES:
        files = _parquet_files(root.root / "tables" / table / part_dir)
        if table == "frames":  # only frames of committed clips (and what an earlier compaction kept)
            files = [p for p in files if p.stem == COMPACTED or p.stem in committed]
        files.sort(key=lambda p: (p.stem != COMPACTED, p.name))
        plan[table] = files
    return plan


def _conform(tbl: pa.Table, table: str, path: Path) -> pa.Table:
    """``tbl`` with exactly the columns of the table's schema, in order (missing ones as nulls)."""
    sch = S.SCHEMAS[table]
    extra = [c for c in tbl.column_names if c not in sch.names and c != "source"]
    if extra:
        raise CompactError(f"{path}: columns not in the {table} schema: {extra}")
    cols = []
    for f in sch:
        if f.name in tbl.column_names:
            col = tbl.column(f.name)
            if col.type != f.type:
                try:
                    col = col.cast(f.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise CompactError(f"{path}: column {f.name} ({col.type}) cannot be read as {f.type}: {exc}") from exc
            cols.append(col)
        else:
            cols.append(pa.nulls(tbl.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=sch)


def _part_metadata(path: Path, meta: dict[bytes, bytes]) -> dict[str, dict[str, str]]:
    """``{part: {key: value}}`` of one input file (a compacted file expands to its parts)."""
    own = {k.decode(): v.decode() for k, v in meta.items() if k.startswith(b"talkset.") and k != PARTS_KEY.encode()
           and k not in SKIP_META}
    if path.stem == COMPACTED and PARTS_KEY.encode() in meta:
        parts = json.loads(meta[PARTS_KEY.encode()])
        return {p: {**own, **m} for p, m in parts.items()}
    written = meta.get(b"talkset.written_at")
    if written:
        own["talkset.written_at"] = written.decode()
    return {path.stem: own}


def _merged_metadata(parts: dict[str, dict[str, str]]) -> dict[bytes, bytes]:
    keys = set().union(*parts.values()) if parts else set()
    common = {}
    for k in keys:
        vals = {m.get(k) for m in parts.values()}
        if len(vals) == 1 and None not in vals:
            common[k] = vals.pop()
    rest = {p: {k: v for k, v in m.items() if k not in common} for p, m in sorted(parts.items())}
    out = {k.encode(): v.encode() for k, v in common.items()}
    out[PARTS_KEY.encode()] = json.dumps(rest, sort_keys=True).encode()
    return out


def _write_hidden(files: list[Path], table: str, dest_dir: Path) -> tuple[Path, int]:
    """Concatenate ``files`` (conformed to the table's schema) into one hidden Parquet file."""
    sch = S.SCHEMAS[table]
    cid = uuid.uuid4().hex
    hidden = dest_dir / f"{HIDDEN_PREFIX}{cid}-{table}{HIDDEN_SUFFIX}"
    parts: dict[str, dict[str, str]] = {}
    tables: list[pa.Table] = []
    for p in files:
        try:
            pf = pq.ParquetFile(p)
            parts.update(_part_metadata(p, pf.schema_arrow.metadata or {}))
            tables.append(_conform(pf.read(), table, p))
        except CompactError:
            raise
        except Exception as exc:  # an unreadable shard: name it
            raise CompactError(f"{p}: cannot read: {type(exc).__name__}: {exc}") from exc
    out = pa.concat_tables(tables) if tables else sch.empty_table()
    out = out.replace_schema_metadata({**_merged_metadata(parts), ID_KEY: cid.encode()})
    try:
        pq.write_table(out, hidden, compression="zstd", row_group_size=ROWS_PER_GROUP)
        with open(hidden, "rb+") as fh:
            os.fsync(fh.fileno())
    except BaseException:
        hidden.unlink(missing_ok=True)
        raise
    return hidden, out.num_rows


def _write_json_atomic(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex}-{path.name}"
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _roll_forward(root: DatasetRoot, journal: Path, step: Callable[[str], None] | None = None) -> None:
    """Finish a committed compaction from its journal; every step is idempotent."""
    plan = json.loads(journal.read_text())
    for table, entry in plan["tables"].items():
        d = root.root / entry["dir"]
        final = d / f"{COMPACTED}.parquet"
        hidden = d / entry["hidden"]
        if hidden.exists():
            os.replace(hidden, final)
        elif not (final.exists() and _compaction_id(final) == entry["id"]):
            # the new file is gone before its rename (deleted by a concurrent recover): the shards it
            # would replace are all still there, so stop here and leave them
            journal.unlink(missing_ok=True)
            raise CompactError(f"{journal}: {hidden.name} vanished before it was renamed; {table} shards left in place")
        if step:
            step(f"replace:{table}")
        for name in entry["replaces"]:
            if name != final.name:
                (d / name).unlink(missing_ok=True)
        if step:
            step(f"unlink:{table}")
    journal.unlink(missing_ok=True)


def _compaction_id(path: Path) -> str | None:
    try:
        meta = pq.ParquetFile(path).schema_arrow.metadata or {}
    except (OSError, pa.ArrowException):  # an unreadable file is not ours
        return None
    v = meta.get(ID_KEY)
    return v.decode() if v else None


def recover(root: str | os.PathLike | DatasetRoot) -> dict:
    """Finish or undo compactions a crash interrupted. Returns ``{"rolled_forward": n, "removed": n}``.

    A journal in ``root/_compact`` is rolled forward; hidden ``.compact-*`` files no journal names
    (a crash before the commit point) are deleted.
    """
    droot = root if isinstance(root, DatasetRoot) else DatasetRoot(root)
    jdir = droot.root / JOURNAL_DIR
    rolled = 0
    if jdir.is_dir():
        for tmp in jdir.glob(".tmp-*"):
            tmp.unlink(missing_ok=True)
        for journal in sorted(jdir.glob("*.json")):
            try:
                _roll_forward(droot, journal)
            except CompactError:
                continue  # that compaction is abandoned; its journal is gone and the old shards stay
            rolled += 1
    removed = 0
    tables = droot.root / "tables"
    if tables.is_dir():
        for p in tables.glob(f"*/*/{HIDDEN_PREFIX}*{HIDDEN_SUFFIX}"):
            p.unlink(missing_ok=True)
            removed += 1
    return {"rolled_forward": rolled, "removed": removed}


def compact_source(root: DatasetRoot, part_dir: str, step: Callable[[str], None] | None = None) -> SourceResult:
    """Compact one source (``part_dir`` = its ``source=<id>`` folder name); see the module docstring.

    ``step``: called with the name of each step just done (``hidden:<table>``, ``journal``,
    ``replace:<table>``, ``unlink:<table>``), for tests that kill the process between steps.
    Raises :class:`CompactError` for a shard it cannot read; nothing is changed then.
    """
    t0 = time.perf_counter()
    source = part_dir.split("=", 1)[1]
    plan = _plan(root, part_dir)
    before = sum(len(v) for v in plan.values())
    if all(len(v) == 0 or (len(v) == 1 and v[0].stem == COMPACTED) for v in plan.values()):
        return SourceResult(source, "already compact", before, before, seconds=time.perf_counter() - t0)
    entries: dict[str, dict] = {}
    rows: dict[str, int] = {}
    try:
        for table, files in plan.items():
            if not files:
                continue
            d = files[0].parent
            hidden, n = _write_hidden(files, table, d)
            entries[table] = {"dir": str(d.relative_to(root.root)), "hidden": hidden.name,
                              "id": hidden.name[len(HIDDEN_PREFIX):].split("-", 1)[0],
                              "replaces": [p.name for p in files]}
            rows[table] = n
            if step:
                step(f"hidden:{table}")
    except BaseException:
        for e in entries.values():
            (root.root / e["dir"] / e["hidden"]).unlink(missing_ok=True)
        raise
    journal = _journal_path(root, part_dir)
    _write_json_atomic(journal, {"source": source, "tables": entries})
    if step:
        step("journal")
    _roll_forward(root, journal, step)
    return SourceResult(source, "compacted", before, len(entries), rows, time.perf_counter() - t0)


def compact(root: str | os.PathLike, run_id: str | None = None, log: Callable[[str], None] | None = None) -> list[SourceResult]:
    """Compact every source of ``root`` (recovering an interrupted compaction first).

    Returns one :class:`SourceResult` per source. A source that fails is left unchanged and gets a
    ``failures`` row (stage ``compact``, item = the source id); the others go on. Ends by rewriting
    the schema manifest ``root/_catalog/schemas.json`` (:mod:`talkset.storage.compact_manifest`).
    """
    droot = DatasetRoot(root)
    if not (droot.root / "tables").is_dir():
        raise FileNotFoundError(f"{droot.root}: not a dataset root (no tables/ folder)")
    recover(droot)
    run_id = run_id or f"compact-{time.strftime('%Y%m%dT%H%M%S')}"
    results = []
    for part_dir in _partition_dirs(droot):
        try:
            res = compact_source(droot, part_dir)
        except (CompactError, OSError) as exc:
            source = part_dir.split("=", 1)[1]
            res = SourceResult(source, f"failed: {exc}")
            droot.write_failure(source, "compact", source, str(exc), run_id)
        if log:
            log(f"{res.source}: {res.status}, {res.files_before} -> {res.files_after} files, {res.seconds:.2f} s")
        results.append(res)
    # every file's columns, so the catalog binds its views without reading each footer (compact_manifest)
    write_manifest(droot.root)
    return results
