"""The schema manifest ``root/_catalog/schemas.json``: each shard's column signature, so the catalog
can open a compacted root without reading every Parquet footer each time a view is bound.

Why (measured, ``benchmarks/duckdb_scale.py`` at MIT's size after ``talkset compact``, 864 files,
duckdb 2.0.0, 2-core VM shared with other jobs, load ~2): connecting took 0.40 s, of which 0.25 s
was binding ``turns`` / ``interactions`` and 0.10 s the four table views. Every ``CREATE VIEW``
binds its query, and a view over another view binds that one again: ``frames_all`` is bound 5
times, ``clips`` ~8 times. With ``union_by_name=true`` each bind opens every file's footer
(0.07-0.10 s for the 288 ``frames`` files); with ``union_by_name=false`` DuckDB reads only the
first file's footer at bind time (0.014 s) and checks the others when a query reads them. All
views bound that way: 0.06 s instead of 0.37 s (same run). ``union_by_name=false`` is only right
when every file has the same columns (a file missing a column is an error then, not nulls), so
the catalog needs to know that, cheaply: DuckDB's own ``parquet_schema()`` over the 288 files
costs 0.09-0.15 s, pyarrow's ``read_schema`` 0.14 ms per file (0.12 s for 864), a ``stat`` 8 us.

So ``talkset compact`` (:func:`talkset.storage.compact.compact`) ends by writing this manifest:
for every ``*.parquet`` file under ``root/tables/`` its size, ``st_mtime_ns`` and a signature id;
signatures are the files' (column name, Arrow type) lists. :func:`table_signatures` answers, for a
list of files, the set of signatures among them: from the manifest when a file's size and mtime
still match, else from the file's footer (at most ``max_unknown`` of them; more -> ``None``, "do not
know"). A stale or missing manifest only makes connecting slower, never a view wrong: any file it
does not vouch for is read (or the catalog falls back to ``union_by_name=true``).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import pyarrow.parquet as pq

MANIFEST = Path("_catalog") / "schemas.json"
VERSION = 1


def _signature(path: Path) -> list[list[str]]:
    """``[[name, arrow type], ...]`` of a Parquet file's columns, in file order (reads the footer)."""
    return [[f.name, str(f.type)] for f in pq.read_schema(path)]


def _sig_id(sig: list[list[str]]) -> str:
    return hashlib.sha1(json.dumps(sig).encode()).hexdigest()[:16]


def read_manifest(root: Path) -> dict:
    """The manifest of ``root`` (a resolved dataset root path), or an empty one when missing or unreadable."""
    try:
        m = json.loads((root / MANIFEST).read_text())
        if m.get("version") == VERSION and isinstance(m.get("files"), dict):
            return m
    except (OSError, ValueError):
        pass
    return {"version": VERSION, "signatures": {}, "files": {}}


def _rel(root: Path, path: Path) -> str:
    """``path`` relative to ``root`` (``path`` lies under it: a string cut, os.path.relpath costs 40 us)."""
    r, p = str(root), str(path)
    return p[len(r) + 1:] if p.startswith(r + os.sep) else os.path.relpath(p, r)


def _known(manifest: dict, root: Path, path: Path, st: os.stat_result) -> str | None:
    e = manifest["files"].get(_rel(root, path))
    if e and e[0] == st.st_size and e[1] == st.st_mtime_ns and e[2] in manifest["signatures"]:
        return e[2]
    return None


def write_manifest(root: Path) -> dict:
    """Rewrite ``root/_catalog/schemas.json`` for every ``*.parquet`` file under ``root/tables/``.

    Entries of the old manifest whose size and mtime still match are kept; other files' footers
    are read. Unreadable files are left out (the catalog reads them itself). Written to a temporary
    name and renamed, so a reader sees the old manifest or the new one. Returns the manifest.
    """
    old = read_manifest(root)
    out = {"version": VERSION, "signatures": {}, "files": {}}
    tables = root / "tables"
    for dirpath, dirnames, filenames in os.walk(tables, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or not name.endswith(".parquet"):
                continue
            p = Path(dirpath) / name
            try:
                st = p.stat()
                sid = _known(old, root, p, st)
                if sid is not None:
                    sig = old["signatures"][sid]
                else:
                    sig = _signature(p)
                    sid = _sig_id(sig)
            except Exception:  # noqa: BLE001, S112 -- an unreadable or vanished file is not vouched for
                continue
            out["signatures"][sid] = sig
            out["files"][_rel(root, p)] = [st.st_size, st.st_mtime_ns, sid]
    dest = root / MANIFEST
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".tmp-{uuid.uuid4().hex}-{dest.name}"
    with open(tmp, "w") as fh:
        json.dump(out, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, dest)
    return out


def table_signatures(root: Path, files: list[Path], manifest: dict, max_unknown: int = 256) -> set[str] | None:
    """The signature ids among ``files`` (Parquet files under ``root``), or ``None`` when more than
    ``max_unknown`` of them are not in ``manifest`` (or one of those cannot be read)."""
    sigs: set[str] = set()
    unknown: list[Path] = []
    for p in files:
        try:
            sid = _known(manifest, root, p, p.stat())
        except OSError:
            return None
        if sid is None:
            unknown.append(p)
            if len(unknown) > max_unknown:
                return None
        else:
            sigs.add(sid)
    for p in unknown:
        try:
            sigs.add(_sig_id(_signature(p)))
        except Exception:  # noqa: BLE001 -- let DuckDB report the bad file when a query reads it
            return None
    return sigs
