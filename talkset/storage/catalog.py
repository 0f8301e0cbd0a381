"""Open a dataset root in DuckDB with views ``clips``, ``frames``, ``shots``, ``failures``.

Views read ``root/tables/<name>/**/*.parquet`` with ``hive_partitioning=true``, so the
``source`` column comes from the folder names. ``frames`` shows only rows of committed clips
(those with a ``clips`` shard), so a clip interrupted mid-write is never half visible.
"""

from __future__ import annotations

import os

import duckdb

from . import schema as S
from .root import DatasetRoot

READ_ONLY_TYPES = {"SELECT", "EXPLAIN", "PRAGMA", "SHOW", "DESCRIBE"}


class ReadOnlyError(ValueError):
    """A statement given to :func:`query` would change something."""


def connect(root: str | os.PathLike, con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the four views over ``root``.

    A table with no shard yet is an empty view with the same columns.
    """
    droot = DatasetRoot(root)
    root = droot.root
    con = con or duckdb.connect(":memory:")
    for table in S.TABLES:
        base = root / "tables" / table
        name = "frames_all" if table == "frames" else table
        if droot.shard_files(table):
            glob = str(base / "**" / "*.parquet").replace("'", "''")
            con.execute(
                f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet('{glob}', "
                "hive_partitioning=true, union_by_name=true)"
            )
        else:
            empty = S.empty(table)
            con.register(f"_empty_{table}", empty)
            con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM _empty_{table}")
    con.execute(
        "CREATE OR REPLACE VIEW frames AS SELECT * FROM frames_all "
        "WHERE clip_id IN (SELECT clip_id FROM clips)"
    )
    # issue 14: the interaction views ``turns`` and ``interactions`` over frames (talkset.interactions)
    from talkset.interactions import create_views

    create_views(con)
    # tables written by other flows (training splits, evaluation results): a view when present
    tables_dir = root / "tables"
    if tables_dir.is_dir():
        for extra in sorted(p.name for p in tables_dir.iterdir() if p.is_dir() and p.name not in S.TABLES):
            if extra.isidentifier() and droot.shard_files(extra):
                glob = str(tables_dir / extra / "**" / "*.parquet").replace("'", "''")
                con.execute(
                    f"CREATE OR REPLACE VIEW {extra} AS SELECT * FROM read_parquet('{glob}', "
                    "hive_partitioning=true, union_by_name=true)"
                )
    return con


def query(root: str | os.PathLike, sql: str):
    """Run one read-only statement over the root; returns a DuckDB relation result as
    ``(column_names, rows)``. Raises :class:`ReadOnlyError` for statements that write."""
    con = connect(root)
    stmts = con.extract_statements(sql)
    if len(stmts) != 1:
        raise ReadOnlyError(f"give exactly one statement (got {len(stmts)})")
    kind = str(stmts[0].type).split(".")[-1].upper()
    if kind not in READ_ONLY_TYPES:
        raise ReadOnlyError(f"talkset sql is read-only: {kind} statements are not allowed")
    cur = con.execute(sql)
    cols = [d[0] for d in cur.description] if cur.description else []
    return cols, cur.fetchall()
