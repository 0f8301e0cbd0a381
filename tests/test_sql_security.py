"""``talkset sql`` is read-only and confined to the dataset root's tables (issue 12 §1).

The root is small and real: a few rows of every table (clips, frames, shots, failures, splits, eval)
written through :class:`talkset.storage.root.DatasetRoot`, no collect. Beside it: a second root with
a "secret" row, a CSV / JSON / text file outside both, and the root's own ``_runs`` folder (inside the
root, outside ``tables/``). Every escape of issue 12 and its variants must raise
:class:`talkset.storage.catalog.ReadOnlyError` with a message naming why, and must leave the file
system exactly as it was (the file it aims at does not exist afterwards, no file under the root
changes). Plain queries keep working, with exact values. Both layers are tested on their own too:
the statement filter without DuckDB's settings would still refuse, and DuckDB's locked settings
refuse what reaches them without the filter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from talkset.storage.catalog import ReadOnlyError, check_statement, connect, connect_locked, query
from talkset.storage.root import DatasetRoot
from talkset.storage.schema import SHOTS

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 12, 7, tzinfo=UTC)


def write_small_root(path: Path, sources=("s1", "s2"), clips_per_source=2, frames_per_clip=5) -> DatasetRoot:
    """A dataset root with a few rows of every table, written through the root's atomic writer."""
    root = DatasetRoot(path)
    root.make_dirs()
    for s in sources:
        shots = []
        for k in range(clips_per_source):
            cid = f"{s}-s{k:04d}"
            shots.append({"shot_idx": k, "start_frame": 25 * k, "end_frame": 25 * k + frames_per_clip,
                          "start_s": float(k), "end_s": k + frames_per_clip / 25, "kept": True, "reason": "",
                          "num_people": 2, "camera_motion": 0.001, "clip_id": cid, "run_id": "r1"})
            frames = [{"clip_id": cid, "track_id": t, "frame_idx": f, "time_s": f / 25,
                       "box": [10.0 + 100 * t, 20.0, 90.0 + 100 * t, 200.0], "box_score": 0.9,
                       "speaking_score": (0.5 if (f + t) % 2 == 0 else -0.5)}
                      for t in range(2) for f in range(frames_per_clip)]
            clip = {"clip_id": cid, "url": f"/data/{s}.mp4", "shot_idx": k, "start_s": float(k),
                    "end_s": k + frames_per_clip / 25, "duration_s": frames_per_clip / 25, "fps": 25.0,
                    "num_frames": frames_per_clip, "width": 480, "height": 360, "num_people": 2,
                    "camera_motion": 0.001, "run_id": "r1", "created_at": T0}
            root.commit_clip(s, cid, clip, frames, {"run_id": "r1"})
        shots.append({"shot_idx": clips_per_source, "start_frame": 1000, "end_frame": 1010, "start_s": 40.0,
                      "end_s": 40.4, "kept": False, "reason": "too_short", "num_people": 1, "camera_motion": 0.0,
                      "clip_id": None, "run_id": "r1"})
        root.write_shard("shots", s, "shots", shots)
    root.write_failure(sources[0], "download", "http://127.0.0.1:9/missing.mp4", "HTTP 404", "r1")
    clip_ids = [f"{s}-s{k:04d}" for s in sources for k in range(clips_per_source)]
    root.write_shard("splits", None, "splits", [
        {"clip_id": c, "source": c.rsplit("-", 1)[0], "split": "train" if i else "test_easy", "reason": "",
         "num_people": 2, "overlap_share": 0.0, "seed": 0, "created_at": T0} for i, c in enumerate(clip_ids)])
    root.write_shard("eval", sources[0], "e1", [
        {"clip_id": clip_ids[0], "source": sources[0], "split": "test_easy", "ssim": 0.5, "psnr": 20.0,
         "frames": frames_per_clip, "checkpoint": "runs/x", "step": 1, "eval_id": "e1", "created_at": T0}])
    root.write_shard("audio_features", sources[0], f"{clip_ids[0]}--m", [
        {"clip_id": clip_ids[0], "source": sources[0], "model": "m", "num_frames": 1, "layers": 1, "dim": 2,
         "features": b"\0" * 8, "created_at": T0}])
    root.write_run("r1", {"run_id": "r1", "secret": "run-summary"})
    return root


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("sqlsec")
    root = write_small_root(base / "root")
    other = DatasetRoot(base / "other")
    other.write_shard("clips", "z", "secret", [{"clip_id": "SECRET-CLIP", "num_frames": 1}])
    (base / "secret.csv").write_text("a,b\nSECRET,1\n")
    (base / "secret.json").write_text(json.dumps([{"a": "SECRET"}]))
    (base / "secret.txt").write_text("SECRET\n")
    return {"base": base, "root": root.root, "other": other.root}


def _snapshot(d: Path) -> dict:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(d.rglob("*"))}


def _fill(template: str, env: dict) -> str:
    base, root, other = env["base"], env["root"], env["other"]
    return template.format(
        out=base / "out.csv", outdir=base / "exported", outdb=base / "x.duckdb", base=base, root=root, other=other,
        inroot=root / "tables" / "clips" / "source=s1" / "injected.parquet",
        secret_csv=base / "secret.csv", secret_json=base / "secret.json", secret_txt=base / "secret.txt",
        other_glob=other / "tables" / "clips" / "**" / "*.parquet",
        dotdot=root / "tables" / ".." / ".." / "other" / "tables" / "clips" / "**" / "*.parquet",
    )


def test_plain_queries_work_with_exact_values(env):
    root = env["root"]
    assert query(root, "SELECT count(*) AS n FROM clips") == (["n"], [(4,)])
    cols, rows = query(root, "SELECT source, count(*) FROM frames GROUP BY ALL ORDER BY ALL")
    assert rows == [("s1", 20), ("s2", 20)]
    # the README's speaking query: every frame has exactly one of its two people speaking
    _, rows = query(root, "SELECT round(avg((n >= 2)::INT), 3), round(avg((n = 1)::INT), 3) FROM (SELECT clip_id, "
                          "frame_idx, count(*) FILTER (WHERE speaking_score > 0) AS n FROM frames GROUP BY ALL)")
    assert rows == [(0.0, 1.0)]
    _, rows = query(root, "SELECT source, shot_idx, kept, reason FROM shots WHERE NOT kept ORDER BY source")
    assert rows == [("s1", 2, False, "too_short"), ("s2", 2, False, "too_short")]
    assert query(root, "SELECT stage, error FROM failures")[1] == [("download", "HTTP 404")]
    splits = query(root, "SELECT split, count(*) FROM splits GROUP BY ALL ORDER BY ALL")[1]
    assert splits == [("test_easy", 1), ("train", 3)]
    assert query(root, "SELECT clip_id, psnr FROM eval")[1] == [("s1-s0000", 20.0)]
    # WITH, FROM-first, DESCRIBE, SUMMARIZE, EXPLAIN [ANALYZE] of a SELECT, a trailing ';' and comments
    assert query(root, "WITH c AS (SELECT * FROM clips) SELECT max(num_frames) FROM c;")[1] == [(5,)]
    assert query(root, "FROM clips SELECT count(DISTINCT source)")[1] == [(2,)]
    assert ("clip_id", "VARCHAR") in [r[:2] for r in query(root, "DESCRIBE clips")[1]]
    assert len(query(root, "SUMMARIZE shots")[1]) == len(SHOTS) + 1  # every schema column and the partition
    for explain in ("EXPLAIN SELECT * FROM frames", "EXPLAIN ANALYZE SELECT count(*) FROM frames",
                    "explain /* c */ analyze -- c\n (SELECT 1) UNION (SELECT 2)", "EXPLAIN (FORMAT json) SELECT 1"):
        cols, rows = query(root, explain)
        assert cols == ["explain_key", "explain_value"] and len(rows) == 1, explain
    assert query(root, "/* a comment */ SELECT 1 -- ; COPY (SELECT 1) TO 'x'")[1] == [(1,)]
    # the root's own shards stay readable by path, and so does its listing inside tables/
    shard = root / "tables" / "clips" / "source=s2" / "s2-s0001.parquet"
    assert query(root, f"SELECT clip_id FROM read_parquet('{shard}')")[1] == [("s2-s0001",)]
    assert query(root, f"SELECT count(*) FROM glob('{root}/tables/frames/**/*.parquet')")[1] == [(4,)]


# (statement template, a fragment of the error). {out}: a file outside the root that must not appear.
ESCAPES = [
    # writing files: COPY / EXPORT, directly or under EXPLAIN ANALYZE
    ("COPY (SELECT 1) TO '{out}'", "COPY statements are not allowed"),
    ("COPY clips TO '{out}' (FORMAT csv)", "COPY statements are not allowed"),
    ("COPY (SELECT * FROM clips) TO '{inroot}' (FORMAT parquet)", "COPY statements are not allowed"),
    ("EXPLAIN ANALYZE COPY (SELECT 1) TO '{out}'", "EXPLAIN is allowed only of a SELECT (got COPY)"),
    ("EXPLAIN COPY (SELECT 1) TO '{out}'", "EXPLAIN is allowed only of a SELECT (got COPY)"),
    ("EXPLAIN (FORMAT json) COPY (SELECT 1) TO '{out}'", "EXPLAIN is allowed only of a SELECT (got COPY)"),
    ("explain /* x */ analyse copy (select 1) to '{out}'", "EXPLAIN is allowed only of a SELECT (got COPY)"),
    ("EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1", "EXPLAIN is allowed only of a SELECT (got CREATE)"),
    ("EXPLAIN ANALYZE INSERT INTO t VALUES (1)", "EXPLAIN is allowed only of a SELECT (got INSERT)"),
    ("EXPORT DATABASE '{outdir}'", "EXPORT statements are not allowed"),
    ("COPY FROM DATABASE memory TO other", "not allowed"),
    # other databases, extensions, settings
    ("ATTACH '{outdb}' AS x", "ATTACH statements are not allowed"),
    ("ATTACH ':memory:' AS m", "ATTACH statements are not allowed"),
    ("DETACH memory", "DETACH statements are not allowed"),
    ("INSTALL httpfs", "extension"),
    ("FORCE INSTALL httpfs", "extension"),
    ("LOAD httpfs", "extension"),
    ("LOAD '{base}/evil.duckdb_extension'", "extension"),
    ("UPDATE EXTENSIONS", "not allowed"),
    ("SET enable_external_access = true", "SET statements are not allowed"),
    ("SET GLOBAL allowed_directories = ['/']", "SET statements are not allowed"),
    ("RESET allowed_directories", "SET statements are not allowed"),
    ("PRAGMA enable_external_access=true", "SET statements are not allowed"),
    ("PRAGMA show_tables", "PRAGMA statements are not allowed"),
    ("SET VARIABLE x = 1", "SET statements are not allowed"),
    ("USE memory", "SET statements are not allowed"),
    # changing the catalog
    ("CREATE TABLE t AS SELECT 1", "CREATE statements are not allowed"),
    ("CREATE OR REPLACE VIEW clips AS SELECT 'forged' AS clip_id", "CREATE statements are not allowed"),
    ("CREATE MACRO m(a) AS a", "CREATE statements are not allowed"),
    ("CREATE SECRET (TYPE s3, KEY_ID 'x', SECRET 'y')", "CREATE statements are not allowed"),
    ("INSERT INTO clips (clip_id) VALUES ('x')", "INSERT statements are not allowed"),
    ("UPDATE clips SET num_frames = 0", "UPDATE statements are not allowed"),
    ("DELETE FROM clips", "DELETE statements are not allowed"),
    ("DROP VIEW clips", "DROP statements are not allowed"),
    ("ALTER VIEW clips RENAME TO c", "ALTER statements are not allowed"),
    ("COMMENT ON VIEW clips IS 'x'", "ALTER statements are not allowed"),
    ("CALL pragma_version()", "CALL statements are not allowed"),
    ("CHECKPOINT", "CALL statements are not allowed"),
    ("PREPARE p AS SELECT 1", "PREPARE statements are not allowed"),
    ("EXECUTE p", "EXECUTE statements are not allowed"),
    ("VACUUM", "VACUUM statements are not allowed"),
    ("BEGIN TRANSACTION", "TRANSACTION statements are not allowed"),
    # several statements, one hidden after a comment or inside a string-looking tail
    ("SELECT 1; SELECT 2", "exactly one statement (got 2)"),
    ("SELECT 1; COPY (SELECT 1) TO '{out}'", "exactly one statement (got 2)"),
    ("SELECT 1 -- harmless\n; COPY (SELECT 1) TO '{out}'", "exactly one statement (got 2)"),
    ("SELECT 1 /* ; */; COPY (SELECT 1) TO '{out}'", "exactly one statement (got 2)"),
    ("/* a */ SELECT 1;\n/* b */ DROP VIEW clips", "exactly one statement (got 2)"),
    ("EXPLAIN (SELECT 1); COPY (SELECT 1) TO '{out}'", "exactly one statement (got 2)"),
    ("", "exactly one statement (got 0)"),
    ("-- only a comment", "exactly one statement (got 0)"),
    ("SELEC 1", "could not parse"),
    # reading outside the root's tables: refused by DuckDB's own confinement
    ("SELECT * FROM read_csv('{secret_csv}')", "reads only the dataset root's tables"),
    ("SELECT * FROM read_csv_auto('/etc/passwd')", "reads only the dataset root's tables"),
    ("SELECT * FROM '{secret_csv}'", "reads only the dataset root's tables"),
    ("SELECT * FROM read_text('/etc/hostname')", "reads only the dataset root's tables"),
    ("SELECT * FROM read_text('file:///etc/hostname')", "reads only the dataset root's tables"),
    ("SELECT * FROM read_blob('{secret_txt}')", "reads only the dataset root's tables"),
    ("SELECT * FROM read_text('{root}/_runs/r1.json')", "reads only the dataset root's tables"),
    ("SELECT * FROM read_json('{secret_json}')", "reads only the dataset root's tables"),
    ("SELECT * FROM read_json_auto('{secret_json}')", "reads only the dataset root's tables"),
    ("SELECT * FROM read_ndjson_objects('{secret_json}')", "reads only the dataset root's tables"),
    ("SELECT * FROM sniff_csv('/etc/passwd')", "reads only the dataset root's tables"),
    ("SELECT * FROM glob('/etc/*')", "reads only the dataset root's tables"),
    ("SELECT * FROM glob('{root}/*')", "reads only the dataset root's tables"),
    ("SELECT * FROM glob('{root}/tables/../*')", "reads only the dataset root's tables"),
    ("SELECT * FROM read_parquet('{other_glob}')", "reads only the dataset root's tables"),
    ("SELECT * FROM read_parquet('{dotdot}')", "reads only the dataset root's tables"),
    ("SELECT * FROM read_parquet(['{root}/tables/clips/source=s1/s1-s0000.parquet', '{other_glob}'])",
     "reads only the dataset root's tables"),
    ("SELECT * FROM parquet_metadata('{other_glob}')", "reads only the dataset root's tables"),
    ("SELECT * FROM parquet_schema('{other_glob}')", "reads only the dataset root's tables"),
    ("SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')", "reads only the dataset root's tables"),
    ("WITH x AS (SELECT * FROM read_text('{secret_txt}')) SELECT * FROM x", "reads only the dataset root's tables"),
    ("SELECT (SELECT content FROM read_text('{secret_txt}'))", "reads only the dataset root's tables"),
    ("EXPLAIN ANALYZE SELECT * FROM read_text('{secret_txt}')", "reads only the dataset root's tables"),
]


@pytest.mark.parametrize("template,why", ESCAPES, ids=[e[0][:50] for e in ESCAPES])
def test_escape_is_refused_and_writes_nothing(env, template, why):
    sql = _fill(template, env)
    before = _snapshot(env["base"])
    with pytest.raises(ReadOnlyError) as err:
        query(env["root"], sql)
    assert why in str(err.value)
    assert "SECRET" not in str(err.value)
    assert not (env["base"] / "out.csv").exists() and not (env["base"] / "exported").exists()
    assert not (env["base"] / "x.duckdb").exists()
    assert _snapshot(env["base"]) == before  # nothing written, under the root or beside it
    assert query(env["root"], "SELECT count(*) FROM clips")[1] == [(4,)]


def test_query_text_cannot_reach_python_objects(env):
    secret_rows = pa.table({"a": ["SECRET"]})  # noqa: F841 - what DuckDB's replacement scan would find
    assert connect(env["root"]).execute("SELECT * FROM secret_rows").fetchall() == [("SECRET",)]
    with pytest.raises(duckdb.CatalogException):
        connect_locked(env["root"]).execute("SELECT * FROM secret_rows")


def test_locked_settings_hold_without_the_filter(env):
    """DuckDB's own layer alone: the settings cannot be changed back, outside paths stay closed."""
    con = connect_locked(env["root"])
    for stmt in ("SET enable_external_access = true", "RESET allowed_directories", "SET lock_configuration = false",
                 "SET autoload_known_extensions = true", "PRAGMA threads=1"):
        with pytest.raises(duckdb.InvalidInputException, match="locked"):
            con.execute(stmt)
    out = env["base"] / "direct.csv"
    for stmt in (f"COPY (SELECT 1) TO '{out}'", f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{out}'",
                 f"EXPORT DATABASE '{env['base'] / 'exported'}'", f"ATTACH '{env['base'] / 'x.duckdb'}'",
                 f"SELECT * FROM read_text('{env['base'] / 'secret.txt'}')", "INSTALL httpfs", "LOAD httpfs"):
        with pytest.raises(duckdb.PermissionException):
            con.execute(stmt)
    assert not out.exists() and not (env["base"] / "exported").exists() and not (env["base"] / "x.duckdb").exists()
    # why the filter stays: inside the allowed folder DuckDB alone would write (and inject rows)
    injected = env["root"] / "tables" / "clips" / "source=s1" / "injected.parquet"
    with pytest.raises(ReadOnlyError, match="COPY"):
        check_statement(con, f"COPY (SELECT 'forged' AS clip_id) TO '{injected}' (FORMAT parquet)")
    assert not injected.exists()
    con.close()


def test_cli_sql_refuses_escapes_and_answers_queries(env):
    """The installed command path: ``python -m talkset.cli sql`` in a subprocess."""
    out = env["base"] / "cli.csv"
    envv = {**os.environ, "PYTHONPATH": str(REPO)}

    def run(sql, *extra):
        return subprocess.run([sys.executable, "-m", "talkset.cli", "sql", "--root", str(env["root"]), *extra, sql],
                              check=False, capture_output=True, text=True, timeout=120, env=envv)

    r = run(f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{out}'")
    assert r.returncode == 2 and "EXPLAIN is allowed only of a SELECT" in r.stderr and not out.exists()
    r = run(f"SELECT * FROM read_text('{env['base'] / 'secret.txt'}')")
    assert r.returncode == 2 and "reads only the dataset root's tables" in r.stderr and "SECRET" not in r.stdout
    r = run("SELECT source, count(*) AS n FROM clips GROUP BY ALL ORDER BY ALL", "--format", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [{"source": "s1", "n": 2}, {"source": "s2", "n": 2}]


def test_symlinks_stay_confined(tmp_path):
    """A table folder symlinked to another disk still reads (DuckDB resolves symlinks, so its real
    folder is allowed too); a symlink planted under ``tables/`` to a file outside stays refused."""
    root = DatasetRoot(tmp_path / "root")
    root.write_failure("s1", "download", "http://127.0.0.1:9/x.mp4", "HTTP 404", "r1")
    (tmp_path / "disk2").mkdir()
    (root.root / "tables" / "failures").rename(tmp_path / "disk2" / "failures")
    (root.root / "tables" / "failures").symlink_to(tmp_path / "disk2" / "failures")
    assert query(root.root, "SELECT source, error FROM failures")[1] == [("s1", "HTTP 404")]
    (tmp_path / "secret.txt").write_text("SECRET\n")
    (root.root / "tables" / "link.txt").symlink_to(tmp_path / "secret.txt")
    (root.root / "tables" / "etc").symlink_to("/etc")
    for sql in (f"SELECT * FROM read_text('{root.root}/tables/link.txt')",
                f"SELECT * FROM glob('{root.root}/tables/etc/*')"):
        with pytest.raises(ReadOnlyError, match="reads only the dataset root's tables"):
            query(root.root, sql)
