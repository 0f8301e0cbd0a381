"""``talkset report ROOT -o report.html``: a dataset card, one self-contained HTML page.

What a researcher looks at right after a collection run (issue 14): hours, clips and sources; the
people-per-clip and clip-length histograms; a resolution table; the distributions of each person's
speaking share and of each clip's overlap (share of frames with >= 2 people inside a turn); the
interaction patterns of :mod:`talkset.interactions` (MIT Sec. 3.2, Fig. 2); why shots were rejected;
failures by stage; the models and versions recorded in the shards' footers; a few frames with their
boxes and skeletons (drawn like :mod:`talkset.render`: red box while the speaking score > 0); and the
dataset's row of the MIT paper's Table 1 (people, area, character, pose, speak, resolution, total
length).

Self-contained: charts are SVG and thumbnails JPEG, both inlined as ``data:`` URIs, the CSS is
inline, nothing is fetched when the page opens (tests/test_report.py renders it in headless
Chromium with the network off and checks that every image decodes).

Every figure comes from one DuckDB connection over the root (:func:`talkset.storage.catalog.connect`),
so the page shows committed clips only, as ``talkset sql`` does. Table 1's "area" is the largest
body region whose COCO keypoints (score >= 0.3; the 133-point pose where present, else the 17 YOLO
body points) are visible in at least half of all person-frames: head (nose), upper body (both
shoulders), half body (both hips), full body (both ankles). "Character" is "real": talkset collects
camera footage and has no detector for animated people.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from talkset import provenance

#: body regions for Table 1's "area", largest first: (name, 0-based COCO keypoint indices all visible)
AREAS = (("full body", (15, 16)), ("half body", (11, 12)), ("upper body", (5, 6)), ("head", (0,)))
KPT_THR = 0.3
PACKAGES = ("talkset", "ultralytics", "mediapipe", "onnxruntime", "opencv-python-headless", "silero-vad", "torch",
            "scenedetect", "av", "pyarrow", "duckdb", "prefect", "ray")


# -- figures --------------------------------------------------------------------------------------
def _rows(con, sql: str, params=None) -> list[dict]:
    cur = con.execute(sql, params or [])
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def _one(con, sql: str, params=None):
    return con.execute(sql, params or []).fetchone()[0]


def _area_sql() -> str:
    kp = "coalesce(keypoints, body_keypoints)"
    parts = []
    for name, idx in AREAS:
        cond = " AND ".join(f"{kp}[{i + 1}][3] >= {KPT_THR}" for i in idx)
        parts.append(f"avg(CASE WHEN {cond} THEN 1.0 ELSE 0.0 END) AS \"{name}\"")
    return f"SELECT {', '.join(parts)} FROM frames WHERE {kp} IS NOT NULL"


def _shard_metadata(root: Path, limit: int = 2000) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """``({stage: {model description: clips}}, {talkset version: clips})`` from the Parquet footers
    of the ``clips`` shards (``talkset.models``, ``talkset.version``; at most ``limit`` shards read)."""
    import pyarrow.parquet as pq

    from talkset.storage.root import DatasetRoot

    models: dict[str, dict[str, int]] = {}
    versions: dict[str, int] = {}
    for path in DatasetRoot(root).shard_files("clips")[:limit]:
        meta = pq.read_schema(path).metadata or {}
        v = meta.get(b"talkset.version", b"unknown").decode()
        versions[v] = versions.get(v, 0) + 1
        raw = meta.get(b"talkset.models")
        if raw:
            try:
                used = json.loads(raw)
            except ValueError:
                used = {"?": raw.decode(errors="replace")}
            for stage, desc in (used.items() if isinstance(used, dict) else []):
                d = models.setdefault(str(stage), {})
                d[str(desc)] = d.get(str(desc), 0) + 1
    return models, versions


def gather(root: str | os.PathLike) -> dict:
    """Every figure of the card, as plain Python values (the HTML is made from this dict).

    Keys: ``summary`` (hours, clips, sources, sources_seen, person_tracks, frames), ``people_hist``
    [(people, clips)], ``lengths`` (clip durations, s), ``resolutions`` [(width, height, clips, hours)],
    ``speaking_shares`` (per person: share of frames with speaking_score > 0), ``overlaps`` (per clip:
    ``interactions.share_2plus``), ``patterns`` [(pattern, clips, hours)], ``interactions`` (rows of the
    view), ``rejected`` [(reason, shots)], ``failures`` [(stage, count, example)], ``models``,
    ``versions``, ``table1`` (the Table 1 row as ``{column: text}``).
    """
    from talkset.storage.catalog import connect

    root = Path(root)
    con = connect(root)
    summary = _rows(con, """
        SELECT coalesce(sum(duration_s), 0) / 3600.0 AS hours, count(*) AS clips, count(DISTINCT source) AS sources
        FROM clips""")[0]
    summary["sources_seen"] = _one(con, """
        SELECT count(DISTINCT source) FROM (SELECT source FROM shots UNION ALL SELECT source FROM failures
                                            UNION ALL SELECT source FROM clips)""")
    summary["frames"] = _one(con, "SELECT count(*) FROM frames")
    summary["person_tracks"] = _one(con, "SELECT count(*) FROM (SELECT DISTINCT clip_id, track_id FROM frames)")
    people_hist = [(r["num_people"], r["clips"]) for r in _rows(
        con, "SELECT num_people, count(*) AS clips FROM clips GROUP BY ALL ORDER BY ALL")]
    lengths = [r[0] for r in con.execute("SELECT duration_s FROM clips ORDER BY duration_s").fetchall()]
    resolutions = [(r["width"], r["height"], r["clips"], r["hours"]) for r in _rows(con, """
        SELECT width, height, count(*) AS clips, sum(duration_s) / 3600.0 AS hours FROM clips
        GROUP BY ALL ORDER BY clips DESC, height DESC""")]
    speaking_shares = [r[0] for r in con.execute("""
        SELECT avg(CASE WHEN speaking_score > 0 THEN 1.0 ELSE 0.0 END) FROM frames
        GROUP BY clip_id, track_id ORDER BY ALL""").fetchall()]
    inter = _rows(con, "SELECT * FROM interactions ORDER BY clip_id")
    patterns = [(r["pattern"], r["clips"], r["hours"]) for r in _rows(con, """
        SELECT pattern, count(*) AS clips, sum(duration_s) / 3600.0 AS hours FROM interactions
        GROUP BY ALL ORDER BY clips DESC, pattern""")]
    rejected = [(r["reason"], r["shots"]) for r in _rows(con, """
        SELECT CASE WHEN regexp_matches(reason, '^(camera_motion|overlay|occlusion|face_area|face_ratio)=')
                    THEN split_part(reason, '=', 1) ELSE reason END AS reason,
               count(*) AS shots
        FROM shots WHERE NOT kept GROUP BY ALL ORDER BY shots DESC, reason""")]
    failures = [(r["stage"], r["n"], r["example"]) for r in _rows(con, """
        SELECT stage, count(*) AS n, min(error) AS example FROM failures GROUP BY ALL ORDER BY n DESC, stage""")]
    area_share = _rows(con, _area_sql())[0]
    cover = _rows(con, """
        SELECT count(*) AS n, count(keypoints) AS pose, count(speaking_score) AS speak FROM frames""")[0]
    models, versions = _shard_metadata(root)

    n = cover["n"] or 0
    area = next((name for name, _ in AREAS if (area_share.get(name) or 0) >= 0.5), "n/a")
    people = sorted({p for p, _ in people_hist})
    if resolutions:
        hs = sorted({h for _, h, _, _ in resolutions})
        w, h = resolutions[0][:2]
        res = f"{w}x{h}" if len(resolutions) == 1 else f"{hs[0]}p-{hs[-1]}p (most clips {w}x{h})"
    else:
        res = "n/a"
    table1 = {
        "Dataset": root.name,
        "People": (f"{people[0]}" if len(people) == 1 else f"{people[0]}-{people[-1]}") if people else "n/a",
        "Area": area + (f" ({100 * area_share[area]:.0f} % of person-frames)" if area != "n/a" else ""),
        "Character": "real",
        "Pose": (f"COCO-WholeBody 133 ({100 * cover['pose'] / n:.0f} % of person-frames)"
                 if n and cover["pose"] else "none"),
        "Speak": (f"per-frame speaking score ({100 * cover['speak'] / n:.0f} % of person-frames)"
                  if n and cover["speak"] else "none"),
        "Resolution": res,
        "Total length": f"{summary['hours']:.2f} h" + (f" ({60 * summary['hours']:.1f} min)" if summary["hours"] < 1 else ""),
    }
    return {
        "summary": summary, "people_hist": people_hist, "lengths": lengths, "resolutions": resolutions,
        "speaking_shares": speaking_shares, "overlaps": [r["share_2plus"] for r in inter], "patterns": patterns,
        "interactions": inter, "rejected": rejected, "failures": failures, "models": models,
        "versions": versions, "area_share": area_share, "table1": table1,
    }


# -- charts and thumbnails ------------------------------------------------------------------------
def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def bar_chart(labels: list[str], values: list[float], title: str, xlabel: str = "", ylabel: str = "",
              color: str = "#3b6ea8", width: int = 460, height: int = 230) -> str:
    """A bar chart as an SVG ``data:`` URI (one bar per label, value printed above it)."""
    e = html.escape
    left, right, top, bottom = 44, 10, 28, 44
    pw, ph = width - left - right, height - top - bottom
    vmax = 1.15 * max([float(v) for v in values] + [1e-9])  # headroom for the value labels
    n = max(1, len(values))
    bw = pw / n
    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'font-family="sans-serif" font-size="11">'),
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
           f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">{e(title)}</text>',
           f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#444"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#444"/>']
    for i, (lab, v) in enumerate(zip(labels, values)):
        bh = ph * float(v) / vmax
        x = left + i * bw
        out.append(f'<rect x="{x + 0.12 * bw:.1f}" y="{top + ph - bh:.1f}" width="{0.76 * bw:.1f}" '
                   f'height="{bh:.1f}" fill="{color}"/>')
        txt = f"{v:g}" if isinstance(v, (int, np.integer)) or float(v).is_integer() else f"{v:.2f}"
        out.append(f'<text x="{x + bw / 2:.1f}" y="{top + ph - bh - 3:.1f}" text-anchor="middle">{e(txt)}</text>')
        if n <= 12 or i % max(1, n // 10) == 0:
            out.append(f'<text x="{x + bw / 2:.1f}" y="{top + ph + 14}" text-anchor="middle">{e(str(lab))}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 8}" text-anchor="middle">{e(xlabel)}</text>')
    out.append(f'<text x="12" y="{top + ph / 2}" text-anchor="middle" transform="rotate(-90 12 {top + ph / 2})">'
               f'{e(ylabel)}</text>')
    out.append("</svg>")
    return _data_uri("image/svg+xml", "".join(out).encode())


def histogram(values: list[float], edges: list[float], title: str, xlabel: str, ylabel: str, fmt: str = "{:g}",
              color: str = "#3b6ea8") -> str:
    """A histogram of ``values`` over bins ``edges`` (last bin closed) as an SVG ``data:`` URI."""
    counts, _ = np.histogram(np.asarray(values, dtype=float), bins=np.asarray(edges, dtype=float))
    pairs = list(itertools.pairwise(edges))
    labels = [f"{fmt.format(a)}-{fmt.format(b)}" for a, b in pairs] if len(pairs) <= 6 else [fmt.format(a) for a, _ in pairs]
    return bar_chart(labels, [int(c) for c in counts], title, xlabel, ylabel, color=color)


def thumbnail(root: str | os.PathLike, clip: dict, frame_idx: int, con, max_width: int = 480) -> str:
    """One clip frame with every person's box (red while speaking_score > 0, else blue), skeleton
    (133 COCO-WholeBody points, else the 17 YOLO body points) and face box, as a JPEG ``data:`` URI.

    ``clip``: a ``clips`` row (video_path, fps); ``frame_idx``: the clip frame (0-based).
    Raises ``FileNotFoundError`` when the clip's video is missing."""
    import cv2

    from talkset.media import iter_frames
    from talkset.render import BLUE, RED
    from talkset.wholebody import draw_pose

    video = Path(root) / clip["video_path"]
    if not video.is_file():
        raise FileNotFoundError(f"clip video {video} is missing")
    fps = float(clip["fps"])
    image = None
    for _, _, img in iter_frames(video, start_s=max(0.0, (frame_idx - 0.5) / fps)):
        image = img
        break
    if image is None:
        raise ValueError(f"{video}: no frame at index {frame_idx}")
    rows = _rows(con, """
        SELECT track_id, box, keypoints, body_keypoints, face_box, speaking_score FROM frames
        WHERE clip_id = ? AND frame_idx = ? ORDER BY track_id""", [clip["clip_id"], frame_idx])
    for r in rows:
        kp = r["keypoints"] if r["keypoints"] is not None else r["body_keypoints"]
        if kp is not None:
            kp = np.asarray(kp, dtype=np.float32)
            if len(kp) == 17:  # YOLO's body points are the first 17 of COCO-WholeBody
                kp = np.concatenate([kp, np.zeros((133 - 17, 3), np.float32)])
            draw_pose(image, kp, score_thr=KPT_THR, thickness=2, radius=2)
        speaking = r["speaking_score"] is not None and r["speaking_score"] > 0
        color = RED if speaking else BLUE
        x1, y1, x2, y2 = map(int, r["box"])
        cv2.rectangle(image, (x1, y1), (x2, y2), color, 2)
        if r["face_box"] is not None:
            fx1, fy1, fx2, fy2 = map(int, r["face_box"])
            cv2.rectangle(image, (fx1, fy1), (fx2, fy2), (255, 255, 255), 1)
        label = f"{r['track_id']}: {r['speaking_score']:+.2f}" if r["speaking_score"] is not None else f"{r['track_id']}"
        cv2.putText(image, label, (x1 + 3, max(12, y1 + 14)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 2)
    if image.shape[1] > max_width:
        s = max_width / image.shape[1]
        image = cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return _data_uri("image/jpeg", buf.tobytes())


def _thumbnails(root: Path, con, n: int) -> list[tuple[str, str]]:
    """Up to ``n`` ``(caption, data URI)``: one per clip, clips of different patterns first, at the
    middle of the clip's longest turn (else the middle frame)."""
    picks = _rows(con, """
        WITH lt AS (SELECT clip_id, arg_max((start_frame + end_frame) // 2, duration_s) AS f,
                           arg_max(track_id, duration_s) AS speaker FROM turns GROUP BY clip_id)
        SELECT c.clip_id, c.video_path, c.fps, c.num_frames, i.pattern, lt.f, lt.speaker,
               row_number() OVER (PARTITION BY i.pattern ORDER BY c.clip_id) AS k
        FROM clips c JOIN interactions i USING (clip_id) LEFT JOIN lt USING (clip_id)
        ORDER BY k, c.clip_id LIMIT ?""", [n])
    out = []
    for p in picks:
        f = int(p["f"]) if p["f"] is not None else max(0, int(p["num_frames"] or 1) // 2)
        try:
            uri = thumbnail(root, p, f, con)
        except (FileNotFoundError, ValueError) as exc:
            out.append((f"{p['clip_id']}: no thumbnail ({exc})", ""))
            continue
        who = f", person {p['speaker']} speaking" if p["speaker"] is not None else ""
        out.append((f"{p['clip_id']} frame {f} ({f / float(p['fps']):.1f} s{who}; {p['pattern']})", uri))
    return out


# -- HTML -----------------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1000px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}
th{background:#f2f2f2}.num{text-align:right}.charts img{margin:4px}.thumbs figure{display:inline-block;margin:6px}
.thumbs figcaption{font-size:12px;max-width:480px}.note{font-size:12px;color:#555}.wide{overflow-x:auto}
"""


def _table(head: list[str], rows: list[list], num: set[int] = frozenset()) -> str:
    e = html.escape
    h = "".join(f"<th>{e(str(x))}</th>" for x in head)
    body = "".join(
        "<tr>" + "".join(f'<td{" class=num" if i in num else ""}>{e(_fmt(v))}</td>' for i, v in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{h}</tr>{body}</table>"


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


def render_html(root: str | os.PathLike, figures: dict, thumbs: list[tuple[str, str]]) -> str:
    """The card's HTML from :func:`gather`'s figures and ``(caption, data URI)`` thumbnails."""
    e = html.escape
    f = figures
    s = f["summary"]
    t1 = f["table1"]
    max_len = max(f["lengths"] + [1.0])
    step = max(1.0, float(np.ceil(max_len / 8 / 5) * 5))
    len_edges = [step * i for i in range(int(np.ceil(max_len / step)) + 1)]
    if len(len_edges) < 2:
        len_edges = [0.0, step]
    tenths = [i / 10 for i in range(11)]
    twentieths = [i / 20 for i in range(11)]
    charts = [
        bar_chart([str(p) for p, _ in f["people_hist"]], [c for _, c in f["people_hist"]], "People per clip",
                  "people", "clips"),
        histogram(f["lengths"], len_edges, "Clip length", "seconds", "clips"),
        histogram(f["speaking_shares"], tenths, "Speaking share per person", "share of the person's frames with score > 0 (bin start)",
                  "people", fmt="{:.1f}", color="#c0392b"),
        histogram([min(x, 0.5) for x in f["overlaps"]], twentieths, "Overlap per clip",
                  "share of frames with >= 2 speakers (bin start; last: >= 0.45)", "clips", fmt="{:.2f}", color="#8e44ad"),
    ]
    if f["patterns"]:
        charts.append(bar_chart([p for p, _, _ in f["patterns"]], [c for _, c, _ in f["patterns"]],
                                "Interaction patterns", "", "clips", color="#27ae60"))
    inter_cols = ["clip_id", "people", "speakers", "turn_count", "turns_per_min", "switches", "mean_gap_s",
                  "mean_overlap_s", "share_0", "share_1", "share_2plus", "longest_monologue_s", "backchannels",
                  "pattern"]
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        f"<title>talkset dataset card: {e(Path(root).name)}</title><style>{CSS}</style></head><body>",
        f"<h1>talkset dataset card: {e(Path(root).name)}</h1>",
        (f"<p class=note>{e(str(Path(root).resolve()))}; generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC} "
         f"by talkset {e(provenance.version('talkset'))}. Committed clips only, as <code>talkset sql</code> sees them.</p>"),
        "<h2>The dataset's row of MIT's Table 1</h2>",
        _table(list(t1), [list(t1.values())]),
        "<h2>Summary</h2>",
        _table(["hours", "clips", "sources with clips", "sources seen", "person tracks", "frames rows"],
               [[round(s["hours"], 3), s["clips"], s["sources"], s["sources_seen"], s["person_tracks"], s["frames"]]],
               num={0, 1, 2, 3, 4, 5}),
        "<h2>Distributions</h2><div class=charts>",
        *(_img(u, "chart") for u in charts),
        "</div>",
        "<h2>Resolutions</h2>",
        _table(["width", "height", "clips", "hours"], [list(r) for r in f["resolutions"]], num={0, 1, 2, 3}),
        "<h2>Interaction patterns</h2>",
        ("<p class=note>From the <code>interactions</code> view (talkset.interactions): over-talking when >= 20 % of "
         "the speech time has two or more voices, talking-listening when one person does >= 80 % of the talking, "
         "else turn-taking; silent without any turn.</p>"),
        _table(["pattern", "clips", "hours"], [list(r) for r in f["patterns"]], num={1, 2}),
        "<div class=wide>",
        _table(inter_cols, [[r[c] for c in inter_cols] for r in f["interactions"][:50]],
               num=set(range(1, len(inter_cols) - 1))),
        "</div>" + (f"<p class=note>First 50 of {len(f['interactions'])} clips.</p>" if len(f["interactions"]) > 50 else ""),
        "<h2>Rejected shots</h2>",
        _table(["reason", "shots"], [list(r) for r in f["rejected"]], num={1}) if f["rejected"]
        else "<p>No shot was rejected.</p>",
        "<h2>Failures by stage</h2>",
        _table(["stage", "failures", "example"], [list(r) for r in f["failures"]], num={1}) if f["failures"]
        else "<p>No failures.</p>",
        "<h2>Models and versions</h2>",
        _table(["stage", "model (from the shards' metadata)", "clips"],
               [[st, d, n] for st, ds in sorted(f["models"].items()) for d, n in sorted(ds.items())], num={2}),
        _table(["talkset version that wrote the clips", "clips"], [list(r) for r in sorted(f["versions"].items())],
               num={1}),
        _table(["package (installed now)", "version"], [[p, provenance.version(p)] for p in PACKAGES]),
        "<h2>Frames with their annotations</h2>",
        ("<p class=note>Red box: speaking score > 0, blue: not speaking; skeleton: COCO-WholeBody keypoints "
         "with score >= 0.3; white: face box.</p><div class=thumbs>"),
        *(f"<figure>{_img(u, c) if u else ''}<figcaption>{e(c)}</figcaption></figure>" for c, u in thumbs),
        "</div></body></html>",
    ]
    return "\n".join(parts)


def build_report(root: str | os.PathLike, out: str | os.PathLike, thumbnails: int = 4) -> Path:
    """Write the dataset card of ``root`` to ``out`` (HTML, atomically) and return ``out``.

    ``thumbnails``: how many clips get an annotated frame (0 for none). Raises ``FileNotFoundError``
    when ``root`` has no ``tables`` folder."""
    from talkset.storage.catalog import connect

    root = Path(root)
    if not (root / "tables").is_dir():
        raise FileNotFoundError(f"{root} is not a dataset root (no tables/ folder)")
    figures = gather(root)
    thumbs = _thumbnails(root, connect(root), thumbnails) if thumbnails > 0 else []
    page = render_html(root, figures, thumbs)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return out
