"""``talkset render CLIP_ID out.mp4``: look at a clip's annotations.

Draws, on every frame of the clip: each person's box (red while their speaking score > 0, blue
otherwise, as the MIT paper's Fig. 4), the whole-body skeleton (COCO-WholeBody 133, falling back to
the 17 YOLO body keypoints when the pose stage did not run), the face box, and under the frame a
panel with each person's speaking-score curve over the whole clip (the paper's Fig. 2) with a cursor
at the current frame. The clip's 16 kHz audio is muxed in (AAC).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

RED = (0, 0, 255)
BLUE = (255, 80, 0)
PERSON_COLORS = [(0, 200, 255), (0, 255, 0), (255, 0, 255), (255, 255, 0), (0, 128, 255), (200, 200, 200)]


def load_clip(root: str | Path, clip_id: str) -> tuple[dict, dict[int, dict[int, dict]]]:
    """The clip row and ``{track_id: {frame_idx: frame row}}`` from the dataset root."""
    from talkset.storage.catalog import connect

    con = connect(root)
    cur = con.execute("SELECT * FROM clips WHERE clip_id = ?", [clip_id])
    cols = [d[0] for d in cur.description]
    rows = cur.fetchall()
    if not rows:
        known = [r[0] for r in con.execute("SELECT clip_id FROM clips ORDER BY clip_id LIMIT 20").fetchall()]
        raise SystemExit(f"talkset render: no clip {clip_id!r} in {root} (clips: {', '.join(known) or 'none'})")
    clip = dict(zip(cols, rows[0]))
    cur = con.execute(
        "SELECT track_id, frame_idx, box, body_keypoints, keypoints, face_box, speaking_score "
        "FROM frames WHERE clip_id = ? ORDER BY track_id, frame_idx",
        [clip_id],
    )
    tracks: dict[int, dict[int, dict]] = {}
    for tid, fi, box, body, kp, face, score in cur.fetchall():
        tracks.setdefault(tid, {})[fi] = {"box": box, "body": body, "kp": kp, "face": face, "score": score}
    return clip, tracks


def _curve_panel(tracks, num_frames: int, width: int, height: int = 120) -> tuple[np.ndarray, callable]:
    """Static speaking-score panel; returns (image, x_of_frame)."""
    import cv2

    panel = np.full((height, width, 3), 24, np.uint8)
    pad = 28
    y_of = lambda s: int(round(pad / 2 + (1 - (s + 1) / 2) * (height - pad)))  # noqa: E731
    x_of = lambda f: int(round(pad + f * (width - pad - 6) / max(1, num_frames - 1)))  # noqa: E731
    for s, label in ((1, "+1"), (0, "0"), (-1, "-1")):
        cv2.line(panel, (pad, y_of(s)), (width - 6, y_of(s)), (70, 70, 70), 1)
        cv2.putText(panel, label, (2, y_of(s) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (160, 160, 160), 1)
    for i, (tid, frames) in enumerate(sorted(tracks.items())):
        color = PERSON_COLORS[i % len(PERSON_COLORS)]
        pts = [(x_of(f), y_of(r["score"])) for f, r in sorted(frames.items()) if r["score"] is not None]
        for a, b in zip(pts, pts[1:]):
            cv2.line(panel, a, b, color, 1, cv2.LINE_AA)
        cv2.putText(panel, f"person {tid}", (pad + 4 + 80 * i, height - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1)
    return panel, x_of


def render(root: str | Path, clip_id: str, out: str | Path, max_frames: int | None = None) -> Path:
    """Render ``clip_id`` of the dataset ``root`` to ``out`` (mp4, H.264 + AAC). Returns ``out``."""
    import cv2

    from talkset.media import ffmpeg_exe, iter_frames
    from talkset.wholebody import draw_pose

    root = Path(root)
    clip, tracks = load_clip(root, clip_id)
    video = root / clip["video_path"]
    audio = root / clip["audio_path"] if clip.get("audio_path") else None
    w, h, fps = int(clip["width"]), int(clip["height"]), float(clip["fps"])
    n = int(clip["num_frames"] or 0)
    panel, x_of = _curve_panel(tracks, n, w)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
           "-s", f"{w}x{h + panel.shape[0]}", "-r", f"{fps}", "-i", "-"]
    if audio is not None and audio.is_file():
        cmd += ["-i", str(audio), "-map", "0:v", "-map", "1:a", "-c:a", "aac", "-shortest"]
    cmd += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(out)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for k, _, frame in iter_frames(video):
            if max_frames is not None and k >= max_frames:
                break
            for i, (tid, frames) in enumerate(sorted(tracks.items())):
                r = frames.get(k)
                if r is None:
                    continue
                speaking = r["score"] is not None and r["score"] > 0
                color = RED if speaking else BLUE
                kp = np.asarray(r["kp"] if r["kp"] is not None else r["body"], dtype=np.float32)
                draw_pose(frame, kp, score_thr=0.3, thickness=2, radius=2)
                x1, y1, x2, y2 = map(int, r["box"])
                cv2.rectangle(frame, (x1, y1), (x2, y2), color, 2)
                if r["face"] is not None:
                    fx1, fy1, fx2, fy2 = map(int, r["face"])
                    cv2.rectangle(frame, (fx1, fy1), (fx2, fy2), PERSON_COLORS[i % len(PERSON_COLORS)], 1)
                label = f"{tid}: {r['score']:+.2f}" if r["score"] is not None else f"{tid}: no face"
                cv2.putText(frame, label, (x1 + 3, max(12, y1 + 14)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 2)
            p = panel.copy()
            cv2.line(p, (x_of(k), 0), (x_of(k), p.shape[0] - 1), (255, 255, 255), 1)
            proc.stdin.write(np.ascontiguousarray(np.vstack([frame, p])).tobytes())
        proc.stdin.close()
        err = proc.stderr.read().decode(errors="replace")
        if proc.wait() != 0:
            raise RuntimeError(f"talkset render: ffmpeg failed writing {out}: {err[-500:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
    return out
