"""Train / test splits of a dataset root: the MIT paper's easy / hard test split, recorded in the root.

The paper (Sec. 5) tests CovOG on clips of identities seen in training ("easy") and of unseen
identities and harder interactions ("hard"). talkset has no identity labels, so the split uses
the **source** (one video = one set of people) as the identity proxy, plus control signals:

1. Sources are ranked by ``sha1(f"{seed}:{source}")``; the first ``round(hard_source_frac * S)``
   sources (at least 1 when there are >= 2 sources, never all of them) are held out. Every clip of
   a held-out source is ``test_hard`` (reason ``unseen source``).
2. In every other source, clips are ordered by start time and the last ``ceil(easy_frac * n)`` of
   them (at least 1 when the source has >= 2 clips) are held out in time: ``test_easy``, unless
   their control signals are hard (below), then ``test_hard``.
3. Control signals of a clip: ``num_people`` (clips row) and ``overlap_share``, the share of the
   clip's frames where >= 2 people have ``speaking_score > 0`` (null scores count as not
   speaking). Hard when ``num_people >= hard_min_people`` (3) or ``overlap_share >= hard_overlap``
   (0.2). Training clips keep ``train`` whatever their signals.

The result is one row per clip (``clip_id, source, split, reason, num_people, overlap_share, seed,
created_at``) written through the dataset root's atomic writer to ``root/tables/splits/splits.parquet``.
The same root and options always give the same split.
"""

from __future__ import annotations

import hashlib
import math
import os
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from talkset.storage import schema as S
from talkset.storage.root import DatasetRoot

SPLITS = ("train", "test_easy", "test_hard")
def splits_path(root: str | os.PathLike) -> Path:
    return DatasetRoot(root).shard_path("splits", None, "splits")


def _clip_signals(root: str | os.PathLike) -> list[dict]:
    """Clips with their control signals, ordered by source then start time."""
    from talkset.storage.catalog import connect

    con = connect(root)
    rows = con.execute(
        """
        WITH per_frame AS (
            SELECT clip_id, frame_idx, count(*) FILTER (WHERE speaking_score > 0) AS n_speaking
            FROM frames GROUP BY clip_id, frame_idx
        ), overlap AS (
            SELECT clip_id, avg(CASE WHEN n_speaking >= 2 THEN 1.0 ELSE 0.0 END) AS overlap_share
            FROM per_frame GROUP BY clip_id
        )
        SELECT c.clip_id, c.source, c.start_s, c.num_people, coalesce(o.overlap_share, 0.0)
        FROM clips c LEFT JOIN overlap o USING (clip_id)
        ORDER BY c.source, c.start_s, c.clip_id
        """
    ).fetchall()
    return [
        {"clip_id": r[0], "source": r[1], "start_s": r[2], "num_people": int(r[3] or 0), "overlap_share": float(r[4])}
        for r in rows
    ]


def make_splits(
    root: str | os.PathLike,
    seed: int = 0,
    hard_source_frac: float = 0.2,
    easy_frac: float = 0.2,
    hard_min_people: int = 3,
    hard_overlap: float = 0.2,
    write: bool = True,
) -> pa.Table:
    """Compute the split of every committed clip of ``root`` (see module docstring) and, with
    ``write``, record it atomically at :func:`splits_path`. Returns the table (schema
    :data:`talkset.storage.schema.SPLITS`). Raises ``ValueError`` when the root has no clips."""
    clips = _clip_signals(root)
    if not clips:
        raise ValueError(f"{root}: no committed clips to split (run `talkset collect` first)")
    sources = sorted({c["source"] for c in clips}, key=lambda s: hashlib.sha1(f"{seed}:{s}".encode()).hexdigest())
    n_hard = 0
    if len(sources) >= 2:
        n_hard = min(len(sources) - 1, max(1, round(hard_source_frac * len(sources))))
    hard_sources = set(sources[:n_hard])
    now = datetime.now(timezone.utc)
    rows = []
    by_source: dict[str, list[dict]] = {}
    for c in clips:
        by_source.setdefault(c["source"], []).append(c)
    for src, items in by_source.items():
        n_easy = 0
        if src not in hard_sources and len(items) >= 2:
            n_easy = min(len(items) - 1, max(1, math.ceil(easy_frac * len(items))))
        for i, c in enumerate(items):
            signals = f"{c['num_people']} people, overlap {c['overlap_share']:.2f}"
            hard_ctrl = c["num_people"] >= hard_min_people or c["overlap_share"] >= hard_overlap
            if src in hard_sources:
                split, reason = "test_hard", f"unseen source; {signals}"
            elif i >= len(items) - n_easy:
                split = "test_hard" if hard_ctrl else "test_easy"
                reason = f"held out in time ({'hard' if hard_ctrl else 'easy'} control signals); {signals}"
            else:
                split, reason = "train", f"training source; {signals}"
            rows.append(
                {
                    "clip_id": c["clip_id"],
                    "source": src,
                    "split": split,
                    "reason": reason,
                    "num_people": c["num_people"],
                    "overlap_share": c["overlap_share"],
                    "seed": seed,
                    "created_at": now,
                }
            )
    table = pa.Table.from_pylist(sorted(rows, key=lambda r: r["clip_id"]), schema=S.SPLITS)
    if write:
        DatasetRoot(root).write_shard("splits", None, "splits", table, {"seed": seed})
    return table


def read_splits(root: str | os.PathLike) -> dict[str, str]:
    """``{clip_id: split}`` from the recorded split; ``FileNotFoundError`` when none was made."""
    p = splits_path(root)
    if not p.is_file():
        raise FileNotFoundError(f"no split recorded at {p}: run talkset.training.splits.make_splits(root) first")
    t = pq.read_table(p, columns=["clip_id", "split"]).to_pydict()
    return dict(zip(t["clip_id"], t["split"]))


def clips_in(root: str | os.PathLike, split: str, make: bool = True, seed: int = 0) -> list[str]:
    """Clip ids of ``split``: ``train``, ``test_easy``, ``test_hard``, ``test`` (both test splits) or
    ``all``. With ``make``, a missing split record is created first (``seed``)."""
    if split == "all":
        from talkset.storage.catalog import connect

        return [r[0] for r in connect(root).execute("SELECT clip_id FROM clips ORDER BY clip_id").fetchall()]
    if make and not splits_path(root).is_file():
        make_splits(root, seed=seed)
    sp = read_splits(root)
    want = {"test": {"test_easy", "test_hard"}}.get(split, {split})
    if not want <= set(SPLITS):
        raise ValueError(f"unknown split {split!r}: use train, test, test_easy, test_hard or all")
    return sorted(c for c, s in sp.items() if s in want)
