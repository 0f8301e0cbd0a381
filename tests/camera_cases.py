"""Camera-motion cases built with ffmpeg from the shared clips (tests/test_camera.py, tests/test_layout_measures.py).

Each case is 4 s at 25 fps, 640 px wide panels (small, so the tests stay cheap):
- ``debate_overlay``: the shared debate split screen (two people filling their halves and
  gesturing, its own countdown overlay) at 960x540, 8 s, with the timer and ticker added: the
  case the previous measure rejected (0.00058 > 0.0004).
- ``split_overlay``: the shared interview (itself a split screen) and the shared debate side by
  side (hstack), with a burned-in running timer (hundredths of a second, changing every frame) and
  a ticker scrolling 160 px/s along the bottom (ffmpeg ``drawtext``); cameras static.
- ``crop80_*``: crops where the people fill ~80 % of the frame (their YOLO box area / frame area:
  restaurant 0.84, debate left 0.82, blackjournal two-shot 0.88); cameras static.
- ``pan_*``: the same crops moving right 24-40 px/s (``crop`` with ``x='a+t*v'``); ``split_pan``:
  the split screen with its right panel panning 30 px/s and the overlays burned in on top, so the
  overlays stay still while a camera moves; ``zoom_*``: ``zoompan`` 1 -> 1.16 over 4 s.
"""

from __future__ import annotations

from pathlib import Path

from talkset.media import run_ffmpeg

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
TICKER = "BREAKING NEWS - markets close higher - rain tomorrow - the debate continues at nine"
OUT = ["-an", "-r", "25", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "20", "-pix_fmt", "yuv420p"]

# crops (source, start s, w, h, x, y): people fill ~80 % of these windows
CROPS = {
    "restaurant": ("visualvoice_noisy_restaurant.mp4", 0.0, 720, 720, 200, 0),
    "debate": ("clearervoice_tse_001.avi", 0.0, 700, 720, 0, 0),
    "blackjournal": ("dvscripts_blackjournal.mp4", 20.0, 410, 300, 20, 60),
}


def overlays(label: str = "") -> str:
    """drawtext filters: a running timer (top right) and a ticker scrolling 160 px/s (bottom)."""
    timer = (f"drawtext=fontfile={FONT}:text='%{{eif\\:t*100\\:d}}':fontsize=36:fontcolor=white:"
             "box=1:boxcolor=black@0.6:x=w-tw-20:y=16")
    ticker = (f"drawtext=fontfile={FONT}:text='{TICKER}':fontsize=26:fontcolor=yellow:box=1:boxcolor=navy:"
              "boxborderw=6:x=w-mod(t*160\\,w+tw):y=h-th-14")
    return f"{timer},{ticker}"


def split_overlay(clips: Path, dst: Path, pan_right: float = 0.0) -> Path:
    """Two 640x360 panels side by side + timer + ticker; ``pan_right`` px/s pans the right panel."""
    right = "scale=640:360"
    if pan_right:
        right = f"crop=1040:585:x='t*{pan_right * 1040 / 640:g}':y=60,scale=640:360"
    fc = (f"[0:v]scale=640:360,setsar=1[a];[1:v]{right},setsar=1[b];[a][b]hstack=2,{overlays()}")
    run_ffmpeg(["-i", str(clips / "visualvoice_interview.mp4"), "-i", str(clips / "clearervoice_tse_001.avi"),
                "-t", "4", "-filter_complex", fc, *OUT, str(dst)], "split screen with overlays")
    return dst


def crop(clips: Path, dst: Path, name: str, speed: float = 0.0) -> Path:
    """A crop where the people fill ~80 % of the frame; ``speed`` px/s pans it right."""
    src, start, w, h, x, y = CROPS[name]
    xs = f"'{x}+t*{speed:g}'" if speed else str(x)
    run_ffmpeg(["-ss", str(start), "-i", str(clips / src), "-t", "4", "-vf", f"crop={w}:{h}:x={xs}:y={y}", *OUT,
                str(dst)], f"crop {name}")
    return dst


def zoom(clips: Path, dst: Path, name: str) -> Path:
    """The crop zooming in from 1.0 to 1.16 over 4 s (zoompan about the centre)."""
    src, start, w, h, x, y = CROPS[name]
    z = (f"crop={w}:{h}:{x}:{y},zoompan=z='1+0.04*in_time':d=1:x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':"
         f"s={w}x{h}:fps=25")
    run_ffmpeg(["-ss", str(start), "-i", str(clips / src), "-t", "4", "-vf", z, *OUT, str(dst)], f"zoom {name}")
    return dst


def debate_overlay(clips: Path, dst: Path) -> Path:
    run_ffmpeg(["-i", str(clips / "clearervoice_tse_001.avi"), "-t", "8", "-vf", f"scale=960:540,{overlays()}",
                *OUT, str(dst)], "debate with overlays")
    return dst


def build_all(clips: Path, out: Path) -> dict[str, tuple[Path, bool]]:
    """Every case: name -> (path, camera moves)."""
    out.mkdir(parents=True, exist_ok=True)
    cases = {"debate_overlay": (debate_overlay(clips, out / "debate_overlay.mp4"), False),
             "split_overlay": (split_overlay(clips, out / "split_overlay.mp4"), False),
             "split_pan": (split_overlay(clips, out / "split_pan.mp4", pan_right=30.0), True)}
    for name in CROPS:
        cases[f"crop80_{name}"] = (crop(clips, out / f"crop80_{name}.mp4", name), False)
    for name, v in (("restaurant", 40.0), ("debate", 40.0), ("blackjournal", 24.0)):
        cases[f"pan_{name}"] = (crop(clips, out / f"pan_{name}.mp4", name, v), True)
    for name in ("restaurant", "blackjournal"):
        cases[f"zoom_{name}"] = (zoom(clips, out / f"zoom_{name}.mp4", name), True)
    return cases
