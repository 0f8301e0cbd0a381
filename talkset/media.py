"""Media helpers: the ffmpeg binary, probing with PyAV, and frame decoding at a target rate.

Frames are always decoded inside the stage that needs them, from the file on disk; they never
travel through Ray's object store.

Odd inputs, as measured on the bad-input corpus (tests/test_bad_inputs.py, issue 12):

- Rotation metadata (a display matrix, as phones write): PyAV hands out frames as stored and
  reports the matrix's angle as ``frame.rotation`` (degrees counter-clockwise). ffmpeg's CLI
  autorotates; so does :func:`iter_frames` (``np.rot90(img, rotation // 90)``), and
  :func:`probe` reports the displayed size. Checked against ffmpeg 5.1's own autorotated output:
  a 480x360 source tagged ``rotate=90`` gives 360x480 frames equal to ffmpeg's pixel for pixel.
- Corrupt bytes in the middle of a file: PyAV's ``container.decode()`` raises
  ``InvalidDataError`` at the first packet the decoder refuses and so ends the whole shot (37 of 75
  frames on a 3 s clip with 3 kB overwritten twice). :func:`iter_frames` decodes packet by packet
  instead and skips a refused packet, as ffmpeg's CLI does (74 of 75 frames there): the tick rule
  keeps the previous frame on screen for the lost one, so a shot with a few broken frames is kept.
  Where more than ``MAX_BROKEN_FRAC`` (10 %) of the packets in the span are refused the frames
  are not worth keeping: it raises :class:`MediaError` ("N of M packets could not be decoded")
  after the last frame, and the stage records the shot as failed.
- A still image (PNG / JPEG / BMP / WebP / TIFF) opens as a one-frame "video" without audio:
  :func:`probe` says "a still image ..., not a video" rather than letting a later check report a
  missing audio stream.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np


class MediaError(RuntimeError):
    """A file could not be probed, decoded or encoded."""


def ffmpeg_exe() -> str:
    """Path of an ffmpeg binary: ``$PATH`` first (Debian's package), else imageio-ffmpeg's."""
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # pragma: no cover - install problem
        raise MediaError(
            "no ffmpeg found: install Debian's `ffmpeg` package or the `imageio-ffmpeg` wheel "
            "(scripts/install.sh does)"
        ) from exc


def run_ffmpeg(args: list[str], what: str) -> None:
    """Run ffmpeg quietly; raise :class:`MediaError` with its stderr tail on failure."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise MediaError(f"ffmpeg failed ({what}): {proc.stderr.strip()[-800:]}")


@dataclass
class Probe:
    """Facts about a media file. Times in seconds, sizes in pixels."""

    path: str
    duration_s: float
    fps: float
    num_frames: int
    width: int
    height: int
    vcodec: str
    has_audio: bool
    audio_codec: str | None = None
    audio_rate: int | None = None
    #: degrees counter-clockwise the stored frames are turned for display (0, 90, 180 or 270);
    #: ``width`` / ``height`` are the displayed size (after the turn)
    rotation: int = 0


# Containers / codecs of still images (PyAV ``format.name`` / codec names).
_STILL_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "webp_pipe", "tiff_pipe", "jpegls_pipe", "qoi_pipe")
_STILL_CODECS = ("png", "mjpeg", "bmp", "webp", "tiff", "jpegls", "qoi", "jpeg2000")
MAX_BROKEN_FRAC = 0.1  # more refused packets than this share of a span fails it (module docstring)


def quarter_turns(rotation: float | None) -> int:
    """A display rotation in degrees (counter-clockwise, any sign) as quarter turns 0..3 (nearest)."""
    if not rotation:
        return 0
    return int(round(float(rotation) / 90.0)) % 4


def _first_rotation(c, v) -> int:
    """Rotation (degrees counter-clockwise) of the first decodable frame of stream ``v``; 0 if none."""
    import av

    try:
        for packet in c.demux(v):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:  # a broken packet: try the next one
                continue
            for frame in frames:
                return 90 * quarter_turns(getattr(frame, "rotation", 0))
    except av.error.FFmpegError:  # unreadable past the header: no rotation to report
        return 0
    return 0


def probe(path: str | Path) -> Probe:
    """Probe a file with PyAV. Raises :class:`MediaError` if it is not a readable video: no video
    stream ("no video stream (not a video)", e.g. audio only), a still image ("a still image (png),
    not a video"), or a file PyAV cannot open (empty, text, truncated before its index).

    ``width`` / ``height`` are the size as displayed (rotation metadata applied, see ``rotation``)."""
    import av

    path = str(path)
    try:
        with av.open(path) as c:
            if not c.streams.video:
                raise MediaError(f"{path}: no video stream (not a video)")
            v = c.streams.video[0]
            fmt = (c.format.name or "").split(",")[0]
            codec = v.codec_context.name
            if fmt in _STILL_FORMATS or (codec in _STILL_CODECS and (v.frames or 0) <= 1 and c.duration is None):
                raise MediaError(f"{path}: a still image ({codec}), not a video; pass a video file")
            a = c.streams.audio[0] if c.streams.audio else None
            rate = v.average_rate or v.guessed_rate or v.base_rate
            fps = float(rate) if rate else 0.0
            if v.duration is not None and v.time_base is not None:
                duration = float(v.duration * v.time_base)
            elif c.duration is not None:
                duration = c.duration / 1e6
            else:
                duration = 0.0
            frames = int(v.frames) if v.frames else int(round(duration * fps))
            w, h = int(v.codec_context.width), int(v.codec_context.height)
            rotation = _first_rotation(c, v)
            if rotation in (90, 270):
                w, h = h, w
            return Probe(
                path=path,
                duration_s=duration,
                fps=fps,
                num_frames=frames,
                width=w,
                height=h,
                vcodec=codec,
                has_audio=a is not None,
                audio_codec=a.codec_context.name if a is not None else None,
                audio_rate=int(a.codec_context.sample_rate) if a is not None else None,
                rotation=rotation,
            )
    except MediaError:
        raise
    except Exception as exc:
        raise MediaError(f"{path}: cannot be read as a video ({type(exc).__name__}: {exc})") from exc


def iter_frames(
    path: str | Path,
    start_s: float = 0.0,
    end_s: float | None = None,
    fps: float | None = None,
    scale: float = 1.0,
    fmt: str = "bgr24",
    every: int = 1,
) -> Iterator[tuple[int, float, np.ndarray]]:
    """Decode frames of ``path`` between ``start_s`` and ``end_s`` (seconds).

    With ``fps`` set, yields one frame per output tick ``k`` at time ``start_s + k / fps``: the
    last decoded frame whose timestamp is <= that time + half a tick, never one at or after
    ``end_s`` (the clip stage encodes exactly these frames, so clip frame k == tick k).
    Without it, every decoded frame is yielded with ``k`` its index from ``start_s``.

    ``every`` > 1 yields only ticks (or frames) ``k`` that are multiples of it, with the same ``k``,
    time and image as without it (the others are decoded but not converted): a sparse sample that
    shows exactly the frames of the full-rate pass (the people stage's filter pass).

    Yields ``(k, time_s, image)`` with ``image`` an HxWx3 uint8 array (BGR by default), resized
    by ``scale``, turned as displayed (rotation metadata applied, like ffmpeg's autorotate). A
    planar ``fmt`` (``yuv420p``: a (H*3/2)xW array) cannot be turned: it raises ``ValueError`` on a
    rotated source; ask for ``bgr24`` there (:func:`probe` tells ``rotation``).

    A packet the decoder refuses (corrupt bytes) is skipped and the previous frame stays on
    screen; more than ``MAX_BROKEN_FRAC`` of the packets refused raises :class:`MediaError` after the
    last frame (module docstring).
    """
    import av
    import cv2

    eps = 1e-6
    every = max(1, int(every))
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        v.thread_type = "AUTO"
        if start_s > 0:
            c.seek(int(max(0.0, start_s - 1.0) / v.time_base), stream=v, backward=True, any_frame=False)

        def convert(fr):
            img = fr.to_ndarray(format=fmt)
            turns = quarter_turns(getattr(fr, "rotation", 0))
            if turns:
                if img.ndim != 3:
                    raise ValueError(f"{path}: a rotated source cannot be turned in planar {fmt}; use bgr24")
                img = np.ascontiguousarray(np.rot90(img, turns))
            if scale != 1.0:
                img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            return img

        counts = {"packets": 0, "broken": 0, "error": ""}

        def decoded():
            """Frames of ``v`` packet by packet, skipping packets the decoder refuses."""
            for packet in c.demux(v):
                counts["packets"] += 1
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError as exc:
                    counts["broken"] += 1
                    counts["error"] = str(exc)
                    continue
                yield from frames

        def check_broken():
            if counts["broken"] and counts["broken"] > MAX_BROKEN_FRAC * counts["packets"]:
                raise MediaError(
                    f"{path}: {counts['broken']} of {counts['packets']} video packets in "
                    f"[{start_s:.3f}, {end_s if end_s is not None else float('inf'):.3f}) s could not be decoded "
                    f"({counts['error']}); the file is corrupt there"
                )

        k = 0
        if fps is None:
            for frame in decoded():
                if frame.pts is None:
                    continue
                t = float(frame.pts * v.time_base)
                if t + eps < start_s:
                    continue
                if end_s is not None and t >= end_s - eps:
                    break
                if k % every == 0:
                    yield k, t, convert(frame)
                k += 1
            check_broken()
            return

        # Rate conversion close to ffmpeg's fps filter (round=near): tick k shows the last frame
        # whose time is <= start_s + k/fps + 0.5/fps (an exact tie picks the earlier frame, where
        # ffmpeg picks the later one), and never a frame at or after end_s.
        half = 0.5 / fps
        prev_frame = None
        last_t = None
        for frame in decoded():
            if frame.pts is None:
                continue
            t = float(frame.pts * v.time_base)
            if end_s is not None and t >= end_s - eps and prev_frame is not None:
                break  # never show a frame from after the segment (e.g. the next shot)
            while prev_frame is not None:
                tick = start_s + k / fps
                if end_s is not None and tick >= end_s - eps:
                    check_broken()
                    return
                if t <= tick + half + eps:
                    break  # this newer frame is still a candidate for tick k
                if k % every == 0:
                    yield k, tick, convert(prev_frame)
                k += 1
            prev_frame, last_t = frame, t
        check_broken()
        if prev_frame is None:
            return
        rate = float(v.average_rate or v.guessed_rate or fps)
        last_shown = last_t + 1.0 / rate  # the last frame is on screen for one source frame
        stop = min(end_s, last_shown) if end_s is not None else last_t + half + eps
        img = None
        while start_s + k / fps < stop - eps:
            if k % every == 0:
                img = convert(prev_frame) if img is None else img
                yield k, start_s + k / fps, img
            k += 1


def read_audio(path: str | Path, rate: int = 16000, start_s: float = 0.0, end_s: float | None = None) -> np.ndarray:
    """Decode mono float32 audio in [-1, 1] at ``rate`` Hz with ffmpeg. Empty if no audio."""
    # Trim after decoding (atrim on the source's timestamps): input seeking is off by ~10 ms on
    # some containers (AVI + AC-3).
    args = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(path), "-vn"]
    if start_s > 0 or end_s is not None:
        trim = f"atrim=start={start_s:.6f}" + (f":end={end_s:.6f}" if end_s is not None else "")
        args += ["-af", f"{trim},asetpts=PTS-STARTPTS"]
    args += ["-ac", "1", "-ar", str(rate), "-f", "f32le", "-"]
    proc = subprocess.run(args, capture_output=True)
    if proc.returncode != 0:
        raise MediaError(f"{path}: audio decode failed: {proc.stderr.decode(errors='replace')[-500:]}")
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()


def cut_with_audio_variants(
    folder: str | Path,
    src: str | Path,
    start_s: float,
    dur_s: float,
    audio: dict[str, object] | None = None,
    rate: int = 16000,
) -> tuple[Path, dict[str, Path]]:
    """Cut ``[start_s, start_s + dur_s)`` of ``src`` to ``folder/clip.mp4`` (25 fps H.264, no
    audio) plus one mono 16-bit WAV per entry of ``audio`` (default ``{"orig": None}``):
    ``None`` = the clip's own audio, ``"silence"`` = zeros, ``(other_path, other_start_s)`` = another
    file's audio. Each WAV has exactly ``round(dur_s * rate)`` samples. This is how the speaking
    score is checked to follow the audio, not the face (issue 5). Returns ``(mp4, {name: wav})``.
    """
    from scipy.io import wavfile

    folder = Path(folder)
    mp4 = folder / "clip.mp4"
    run_ffmpeg(["-ss", f"{start_s}", "-i", str(src), "-t", f"{dur_s}", "-an", "-r", "25", "-c:v", "libx264",
                "-preset", "ultrafast", "-crf", "18", str(mp4)], f"cut {src}")  # fmt: skip
    n = int(round(dur_s * rate))
    wavs: dict[str, Path] = {}
    for i, (name, what) in enumerate((audio or {"orig": None}).items()):
        if what == "silence":
            a = np.zeros(n, np.float32)
        else:
            path, t0 = (src, start_s) if what is None else what
            a = read_audio(path, rate, t0, t0 + dur_s)
        a = np.pad(a, (0, max(0, n - len(a))))[:n]
        wavs[name] = folder / f"audio{i}.wav"
        wavfile.write(wavs[name], rate, (np.clip(a, -1, 1) * 32767).astype(np.int16))
    return mp4, wavs
