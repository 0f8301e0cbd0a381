"""Open a dataset root in DuckDB with views ``clips``, ``frames``, ``shots``, ``failures``.

Views read ``root/tables/<name>/*/*.parquet`` (``**/*.parquet`` for tables outside
``schema.TABLES``) with ``hive_partitioning=true``, so the
``source`` column comes from the folder names. ``frames`` shows only rows of committed clips
(those with a ``clips`` shard), so a clip interrupted mid-write is never half visible. Rows of a
source's ``compacted.parquet`` (``talkset compact``) are committed by construction, so only the
per-clip shards go through that semi-join with ``clips`` (once the root has a compacted ``frames``
file at connect, the view is a ``UNION ALL`` of the two, split on DuckDB's file-name column, which
prunes whole files). Measured at MIT's size after
compaction (``benchmarks/duckdb_scale.py`` root, 3.24 M rows, process CPU time, median of 5, load
~16): the 2+-speaking share 0.30 s instead of 0.43 s, per-track frames 0.33 s instead of 0.38 s,
speaking time per person 0.23 s instead of 0.29 s (``frames_all``, no filter at all: 0.28 / 0.30 /
0.23 s).

``union_by_name``: ``false`` for a table whose files (at connect) all have the same columns, else
``true`` (older shards missing a newer column read as nulls). DuckDB binds every view when it is
created and again inside each view that uses it; with ``union_by_name=true`` every bind opens every
file's footer, with ``false`` only the first file's. The catalog learns the columns from the schema
manifest ``talkset compact`` writes (``root/_catalog/schemas.json``, checked by size and mtime) or,
for up to 256 files it does not vouch for, from their footers (:mod:`talkset.storage.compact_manifest`,
which has the measurements). With the ``*/*.parquet`` globs (:func:`_pattern`) a compacted
MIT-size root connects in 0.18 s instead of 0.60 s (``benchmarks/README.md``, load ~3-5). The
views stay globs, so a connection sees shards written after it was opened; a shard with other
columns written after that (another talkset version writing into the root) makes that
connection's queries of the table fail with DuckDB's "schema mismatch" until it reconnects.

User SQL (``talkset sql``, :func:`query`, anything that runs a query string someone else wrote) runs
on :func:`connect_locked` (the same views, then DuckDB's own confinement), and each statement passes
:func:`check_statement` (a statement filter) before it runs.

- Confinement, set after the views and then locked: ``enable_external_access=false`` with
  ``allowed_directories=['<root>/tables/']`` (plus a private, empty spill folder, which DuckDB adds by
  itself), ``python_enable_replacements=false`` (else ``FROM x`` reads any pandas / Arrow object in the
  caller's Python frames), extension autoload / autoinstall off, ``lock_configuration=true`` so no
  ``SET`` / ``RESET`` / ``PRAGMA x=y`` can undo it. Measured with duckdb 2.0.0: the hive-glob views
  still read; ``read_csv`` / ``read_text`` / ``read_blob`` / ``read_json`` / ``sniff_csv`` /
  ``parquet_metadata`` / ``glob`` / ``read_parquet`` of any path outside ``<root>/tables/`` (``..``
  included, ``file://`` and ``http(s)://`` too), ``COPY ... TO`` outside it, ``EXPORT DATABASE``,
  ``ATTACH`` of a file and ``INSTALL`` / ``LOAD`` raise ``PermissionException``. DuckDB resolves
  symlinks before its check: a symlink under ``tables/`` to a file outside is refused, and the real
  folder of a symlinked table folder (``tables/frames`` on another disk) is allowed explicitly.
  Not limited: a query's memory and time.
- The filter stays because confinement alone is not read-only: ``COPY (...) TO '<root>/tables/x/y.parquet'``
  writes inside the allowed folder (and would inject rows into a view), ``EXPLAIN ANALYZE CREATE TABLE``,
  ``ATTACH ':memory:'``, ``DROP VIEW`` and ``CREATE OR REPLACE VIEW clips`` run in memory. It uses
  DuckDB's parser (``extract_statements``, ``tokenize``), no regexes: exactly one statement, of type
  ``SELECT`` (which covers ``WITH``, ``FROM x``, ``VALUES``, ``TABLE``, ``DESCRIBE``, ``SHOW``,
  ``SUMMARIZE``), or ``EXPLAIN [ANALYZE] [(options)]`` of one ``SELECT``. A comment never hides a second
  statement: the parser counts it (``SELECT 1 -- x\n; COPY ...`` is two statements).
- Cost: ``benchmarks/sql_readonly.py`` (README queries, locked vs unlocked connection).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from pathlib import Path

import duckdb

from . import schema as S
from .compact_manifest import read_manifest, table_signatures
from .root import COMPACTED, DatasetRoot

_FILE_COL = "_talkset_file"  # DuckDB's file-name column in the frames view (not a column of the view)
READ_ONLY_TYPES = {"SELECT"}  # statement types user SQL may run (EXPLAIN: only of a SELECT, see check_statement)

_WHY = {
    "COPY": "it writes files (use --format csv / json and redirect the output instead)",
    "EXPORT": "it writes files",
    "COPY_DATABASE": "it writes a database",
    "ATTACH": "it opens another database",
    "DETACH": "it changes the attached databases",
    "LOAD": "it installs or loads an extension",
    "EXTENSION": "it installs or loads an extension",
    "SET": "it changes a setting (the configuration is locked)",
    "VARIABLE_SET": "it changes a setting (the configuration is locked)",
    "PRAGMA": "it runs a pragma (settings are locked; use SELECT * FROM duckdb_settings() to read them)",
    "CALL": "it calls a procedure (use SELECT * FROM <table function>(...) instead)",
    "PREPARE": "prepared statements are not allowed",
    "EXECUTE": "prepared statements are not allowed",
}


class ReadOnlyError(ValueError):
    """A statement given to :func:`query` would change something, or reads outside the dataset root."""


def _read_sql(droot: DatasetRoot, table: str, files: list[Path], manifest: dict) -> str:
    """``read_parquet(...)`` over ``tables/<table>/`` + :func:`_pattern`: ``union_by_name=false`` when every
    file in ``files`` has the same columns (known from the schema manifest or the footers,
    :func:`talkset.storage.compact_manifest.table_signatures`), else ``union_by_name=true``."""
    glob = _sql_str(str(droot.root / "tables" / table / _pattern(table)))
    sigs = table_signatures(droot.root, files, manifest)
    by_name = "false" if sigs is not None and len(sigs) == 1 else "true"
    return f"read_parquet({glob}, hive_partitioning=true, union_by_name={by_name})"


def _pattern(table: str) -> str:
    """The glob of a table's view under ``tables/<table>/``: ``*/*.parquet`` for the tables of
    :data:`schema.TABLES` (the writer puts every shard in a ``source=<id>`` folder; DuckDB expands it
    in 7 ms instead of 12 ms for ``**/*.parquet`` at 288 folders, and it expands it at every bind:
    ~20 times per connect), ``**/*.parquet`` for other tables."""
    return os.path.join("*", "*.parquet") if table in S.TABLES and table not in S.UNPARTITIONED else \
        os.path.join("**", "*.parquet")


def _shard_files(base: Path, pattern: str) -> list[Path]:
    """The ``*.parquet`` files under ``base`` that the view's glob ``pattern`` (:func:`_pattern`) reads,
    hidden temporary files excluded; one ``os.scandir`` per folder (pathlib's ``rglob`` scans each
    folder twice: 0.04 s for the 868 folders of a compacted MIT-size root, 0.9 s when the disk is busy)."""
    out: list[Path] = []
    if not base.is_dir():
        return out
    for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
        depth = len(Path(dirpath).relative_to(base).parts)
        if pattern.startswith("**") or depth == 1:
            out += [Path(dirpath) / f for f in filenames if f.endswith(".parquet") and not f.startswith(".")]
        if not pattern.startswith("**"):
            dirnames[:] = [] if depth >= 1 else dirnames
    return sorted(out)


def view_sources(root: str | os.PathLike, compacted: set[str] | None = None) -> dict[str, str]:
    """The ``FROM`` clause each table view of :func:`connect` reads: ``{table: "read_parquet(...)"}``
    for every table folder under ``root/tables`` that has a shard (``union_by_name`` as decided by
    :func:`_read_sql`; the module docstring says why). ``compacted``: when given, the names of the
    tables that have a ``compacted.parquet`` file are added to it."""
    droot = DatasetRoot(root)
    manifest = read_manifest(droot.root)
    out = {}
    tables_dir = droot.root / "tables"
    names = list(S.TABLES)
    if tables_dir.is_dir():
        names += sorted(p.name for p in tables_dir.iterdir() if p.is_dir() and p.name not in S.TABLES)
    for table in names:
        files = _shard_files(tables_dir / table, _pattern(table))
        if files:
            out[table] = _read_sql(droot, table, files, manifest)
            if compacted is not None and any(p.stem == COMPACTED for p in files):
                compacted.add(table)
    return out


def connect(root: str | os.PathLike, con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the four views over ``root``.

    A table with no shard yet is an empty view with the same columns.
    """
    droot = DatasetRoot(root)
    con = con or duckdb.connect(":memory:")
    compacted: set[str] = set()
    sources = view_sources(droot.root, compacted)
    for table in S.TABLES:
        name = "frames_all" if table == "frames" else table
        if table in sources:
            con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {sources[table]}")
        else:
            empty = S.empty(table)
            con.register(f"_empty_{table}", empty)
            con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM _empty_{table}")
    if "frames" in compacted:
        # rows of a compacted file are committed by construction (compaction takes only frames of
        # committed clips): only the per-clip shards need the semi-join with clips (-30 % CPU for the
        # 2+-speaking share at MIT's size, module docstring). Without a compacted file at connect the
        # plain form (one glob to expand per bind); both forms are right whatever is compacted later.
        src = sources["frames"][:-1] + f", filename='{_FILE_COL}')"
        like = _sql_str(f"%{os.sep}{COMPACTED}.parquet")
        con.execute(
            f"CREATE OR REPLACE VIEW frames AS SELECT * EXCLUDE ({_FILE_COL}) FROM {src} "
            f"WHERE {_FILE_COL} LIKE {like} "
            f"UNION ALL SELECT * EXCLUDE ({_FILE_COL}) FROM {src} "
            f"WHERE {_FILE_COL} NOT LIKE {like} AND clip_id IN (SELECT clip_id FROM clips)"
        )
    else:
        con.execute(
            "CREATE OR REPLACE VIEW frames AS SELECT * FROM frames_all "
            "WHERE clip_id IN (SELECT clip_id FROM clips)"
        )
    # issue 14: the interaction views ``turns`` and ``interactions`` over frames (talkset.interactions)
    from talkset.interactions import create_views

    create_views(con)
    # tables written by other flows (training splits, evaluation results): a view when present
    for extra, src in sources.items():
        if extra not in S.TABLES and extra.isidentifier():
            con.execute(f"CREATE OR REPLACE VIEW {extra} AS SELECT * FROM {src}")
    return con


def _sql_str(v: str) -> str:
    return "'" + v.replace("'", "''") + "'"


def _table_dirs(tables: Path) -> list[str]:
    """``<root>/tables/`` and the real folder of each table folder of :data:`schema.SCHEMAS` (or a
    partition folder in one) that is a symlink: DuckDB resolves symlinks before it checks
    ``allowed_directories`` (measured, duckdb 2.0.0: a ``tables/frames`` symlinked to another disk is
    refused otherwise). Other symlinks under ``tables/`` (``tables/etc -> /etc``) stay refused."""
    out = [str(tables) + os.sep]
    for name in S.SCHEMAS:
        d = tables / name
        if not d.is_dir():
            continue
        subs = [d] + [Path(e.path) for e in os.scandir(d) if e.is_dir()]
        out += [os.path.realpath(p) + os.sep for p in subs if p.is_symlink()]
    return out


def connect_locked(root: str | os.PathLike) -> duckdb.DuckDBPyConnection:
    """:func:`connect`'s views, then DuckDB confined to ``<root>/tables/`` and its configuration locked.

    For SQL text given by a user; run it through :func:`check_statement` first (:func:`query` does both).
    Files outside ``<root>/tables/`` raise ``duckdb.PermissionException``; ``SET`` raises
    ``duckdb.InvalidInputException`` (configuration locked). Spills go to a private temporary folder
    removed when the connection is garbage-collected. See the module docstring for what was measured.
    """
    con = connect(root)
    tables = DatasetRoot(root).root / "tables"
    spill = tempfile.mkdtemp(prefix="talkset-sql-")
    weakref.finalize(con, shutil.rmtree, spill, True)
    allowed = ", ".join(_sql_str(d) for d in _table_dirs(tables))
    for stmt in (
        f"SET temp_directory = {_sql_str(spill)}",
        f"SET allowed_directories = [{allowed}]",
        "SET allowed_paths = []",
        "SET python_enable_replacements = false",
        "SET autoload_known_extensions = false",
        "SET autoinstall_known_extensions = false",
        "SET allow_community_extensions = false",
        "SET enable_external_access = false",
        "SET lock_configuration = true",
    ):
        con.execute(stmt)
    return con


def check_statement(con: duckdb.DuckDBPyConnection, sql: str):
    """The one read-only statement in ``sql`` (a ``duckdb.Statement``), parsed by DuckDB.

    Accepts exactly one ``SELECT`` statement (``WITH``, ``FROM``, ``VALUES``, ``DESCRIBE``, ``SHOW``,
    ``SUMMARIZE`` parse as ``SELECT``), or ``EXPLAIN [ANALYZE] [(options)]`` of one. Raises
    :class:`ReadOnlyError` naming the statement type for anything else: several statements (a comment
    cannot hide one: the parser counts statements, not lines), ``COPY``, ``EXPORT``, ``ATTACH`` /
    ``DETACH``, ``INSTALL`` / ``LOAD``, ``SET`` / ``RESET`` / ``PRAGMA``, ``CREATE`` / ``INSERT`` /
    ``UPDATE`` / ``DELETE`` / ``DROP`` / ``ALTER``, ``CALL``, ``PREPARE`` / ``EXECUTE``, a syntax error.
    """
    try:
        stmts = con.extract_statements(sql)
    except (duckdb.Error, ValueError) as exc:  # ValueError: a statement type the Python binding does not know
        raise ReadOnlyError(f"talkset sql could not parse the statement: {str(exc).splitlines()[0]}") from exc
    if len(stmts) != 1:
        raise ReadOnlyError(
            f"give exactly one statement (got {len(stmts)}): talkset sql runs a single SELECT")
    stmt = stmts[0]
    kind = _kind(stmt)
    if kind == "EXPLAIN":
        inner_kinds = []
        for inner in _explained(stmt.query):
            try:
                inner_stmts = con.extract_statements(inner)
            except (duckdb.Error, ValueError):
                continue
            inner_kinds += [_kind(inner_stmts[0])] if len(inner_stmts) == 1 else []
        if not any(k in READ_ONLY_TYPES for k in inner_kinds):
            got = inner_kinds[0] if inner_kinds else "a statement it could not parse"
            raise ReadOnlyError(f"talkset sql is read-only: EXPLAIN is allowed only of a SELECT (got {got})")
        return stmt
    if kind not in READ_ONLY_TYPES:
        why = _WHY.get(kind, "it would change the database")
        raise ReadOnlyError(f"talkset sql is read-only: {kind} statements are not allowed: {why}")
    return stmt


def _kind(stmt) -> str:
    """A statement's type name; ``UNKNOWN`` for types the Python binding cannot name (duckdb 2.0.0:
    ``UPDATE EXTENSIONS`` raises ``ValueError: 29 is not a valid StatementType``)."""
    try:
        return stmt.type.name
    except ValueError:
        return "UNKNOWN"


def _explained(sql: str) -> list[str]:
    """What an ``EXPLAIN [ANALYZE|ANALYSE] [(options)] stmt`` may wrap, found with DuckDB's tokenizer
    (comments skipped): the text after ``ANALYZE``, and the text after a parenthesised group there
    (options, or a parenthesised query: the caller keeps the reading that parses as one SELECT)."""
    all_toks = duckdb.tokenize(sql)
    ends = [off for off, _ in all_toks[1:]] + [len(sql)]
    kept = [(off, end) for (off, kind), end in zip(all_toks, ends) if kind != duckdb.token_type.comment]
    toks = [off for off, _ in kept]
    words = [sql[a:b].strip() for a, b in kept]
    if not words or words[0].upper() != "EXPLAIN":
        return []
    i = 2 if len(words) > 1 and words[1].upper() in ("ANALYZE", "ANALYSE") else 1
    out = [sql[toks[i]:]] if i < len(toks) else []
    if i < len(words) and words[i].startswith("("):
        depth = 0
        while i < len(words):
            depth += words[i].count("(") - words[i].count(")")
            i += 1
            if depth <= 0:
                break
        out += [sql[toks[i]:]] if i < len(toks) else []
    return out


def query(root: str | os.PathLike, sql: str):
    """Run one read-only statement of user SQL over the root, on :func:`connect_locked`.

    Returns ``(column_names, rows)``. Raises :class:`ReadOnlyError` for anything :func:`check_statement`
    refuses and for reads outside ``<root>/tables/`` (DuckDB's ``PermissionException``); other DuckDB
    errors (a missing column, a syntax error at run time) propagate as ``duckdb.Error``.
    """
    con = connect_locked(root)
    try:
        check_statement(con, sql)
        try:
            cur = con.execute(sql)
        except duckdb.PermissionException as exc:
            raise ReadOnlyError(
                f"talkset sql reads only the dataset root's tables ({Path(DatasetRoot(root).root, 'tables')}): "
                f"{str(exc).splitlines()[0]}"
            ) from exc
        cols = [d[0] for d in cur.description] if cur.description else []
        return cols, cur.fetchall()
    finally:
        con.close()
