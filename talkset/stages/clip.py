"""clip stage: cut a kept shot out of its source as a frame-accurate 25 fps clip + 16 kHz mono WAV.

The MIT pipeline ("Multi-human Interactive Talking Dataset") cuts with ``ffmpeg -c copy``, which
lands on keyframes. Here every clip frame is chosen explicitly and re-encoded:

- Video: the frames come from :func:`talkset.media.iter_frames` ``(source, start_s, end_s,
  fps=25)`` - tick ``k`` shows the source frame on screen at ``start_s + k / 25`` under the
  ``fps``-filter rule (the last frame whose time is <= the tick + half a tick). They are piped
  raw (yuv420p, no colour conversion for yuv420p sources) into ffmpeg and encoded H.264 yuv420p,
  constant 25 fps, ``-crf 18 -preset veryfast``. So clip frame ``k`` is exactly the frame the
  people stage tracked at index ``k``: the two cannot drift apart. Odd frame sizes lose their last
  column/row (cropped, not scaled, so pixel coordinates stay valid). A source with rotation
  metadata (phones) is cut as it displays: a 480x360 source marked ``rotate=90`` gives a 360x480
  clip, equal to ffmpeg's autorotated frames (frames are piped as bgr24 then, since a planar
  yuv420p frame cannot be turned). A few corrupt packets in the shot are skipped and the previous
  frame is held (see :mod:`talkset.media`); the clip keeps its exact frame count.
- Audio: ffmpeg decodes the source's first audio stream, resamples to 16 kHz, downmixes to mono
  and trims ``[start_s, end_s)`` on the source's own timestamps (``-copyts``); it is padded with
  silence or cut to exactly ``round((end_s - start_s) * 16000)`` samples. It goes to
  ``<clip_id>.wav`` (PCM s16le) and, as AAC, into the mp4 so the clip plays with sound.

Both files are written under hidden temporary names in ``root/clips`` (prefix
``talkset.storage.root.TMP_PREFIX``) and ``os.replace``-d into place; a clip whose mp4 has the expected
frame count and whose wav has the expected sample count is reused (resume).
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import tempfile
import uuid
import wave
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import ClassVar

from talkset import media
from talkset.items import Clip
from talkset.stages.base import Resources, Stage, StageError
from talkset.storage.root import TMP_PREFIX, DatasetRoot

_EPS = 1e-6  # the same tolerance as talkset.media.iter_frames


def tick_count(start_s: float, end_s: float, fps: float) -> int:
    """Number of output ticks ``k`` with ``start_s + k / fps < end_s`` (1e-6 s tolerance): the
    frame count of a clip of ``[start_s, end_s)`` at ``fps`` and the number of frames
    :func:`talkset.media.iter_frames` yields for it."""
    if end_s - _EPS <= start_s:
        return 0
    n = max(0, int(math.floor((end_s - start_s) * fps)) - 1)
    while start_s + n / fps < end_s - _EPS:
        n += 1
    return n


def ffmpeg_exit(rc: int) -> str:
    """ffmpeg's exit status in words: ``exit N``, or the signal that ended it with what to do (a
    write past the file-size limit ends it with SIGXFSZ: Python's ``subprocess`` restores that
    signal's default action in children)."""
    if rc >= 0:
        return f"exit {rc}"
    try:
        name = signal.Signals(-rc).name
    except ValueError:
        return f"killed by signal {-rc}"
    hint = {
        "SIGXFSZ": "a file under root/clips grew past this process's file-size limit (ulimit -f); "
        "raise the limit or free space, then re-run: nothing was kept",
        "SIGKILL": "killed from outside (out of memory?)",
    }.get(name, "")
    return f"killed by {name}" + (f": {hint}" if hint else "")


def wav_samples(path: str | os.PathLike) -> tuple[int, int, int] | None:
    """``(num_samples, rate_hz, channels)`` of a PCM WAV file, or ``None`` if unreadable."""
    try:
        with wave.open(str(path), "rb") as w:
            return w.getnframes(), w.getframerate(), w.getnchannels()
    except (OSError, EOFError, wave.Error):
        return None


@dataclass
class ClipStage(Stage):
    """Re-encode one shot of a source video as ``root/clips/<clip_id>.mp4`` + ``.wav``.

    Parameters:
        root: dataset root (clips go to ``DatasetRoot(root).clips_dir``).
        fps: clip frame rate (25, as the MIT pipeline).
        audio_rate: WAV sample rate in Hz (16000, as the MIT pipeline).
        crf, preset: libx264 quality and speed.

    ``process(Clip) -> Clip`` with ``video_path`` (H.264 yuv420p, constant ``fps``, AAC
    mono audio), ``audio_path`` (mono PCM s16le at ``audio_rate``), ``width``, ``height`` (px) and
    ``num_frames`` (probed from the written mp4) filled in, and ``clip_fps = fps``. Clip frame
    ``k`` shows the source at ``shot.start_s + k / fps``. Raises :class:`StageError` when the
    source has no video frame or no audio in the shot, or ffmpeg fails.
    """

    root: str
    fps: float = 25.0
    audio_rate: int = 16000
    crf: int = 18
    preset: str = "veryfast"

    name: ClassVar[str] = "clip"
    resources: ClassVar[Resources] = Resources(cpus=1)
    reads: ClassVar[tuple[str, ...]] = ("source.video_path", "shot")
    writes: ClassVar[tuple[str, ...]] = ("video_path", "audio_path", "width", "height", "num_frames", "clip_fps")

    def model_info(self) -> dict[str, str]:
        return {"ffmpeg": Path(media.ffmpeg_exe()).name, "libx264": f"crf={self.crf} preset={self.preset}"}

    # -- resume -----------------------------------------------------------------------------
    def _complete(self, mp4: Path, wav: Path, n_frames: int, n_samples: int) -> bool:
        if not (mp4.is_file() and wav.is_file()):
            return False
        ws = wav_samples(wav)
        if ws is None or ws != (n_samples, self.audio_rate, 1):
            return False
        try:
            pr = media.probe(mp4)
        except media.MediaError:
            return False
        return pr.num_frames == n_frames and abs(pr.fps - self.fps) < 1e-3

    def _fill(self, task: Clip, mp4: Path, wav: Path) -> Clip:
        pr = media.probe(mp4)
        return replace(
            task, video_path=str(mp4), audio_path=str(wav), width=int(pr.width), height=int(pr.height),
            num_frames=int(pr.num_frames), clip_fps=float(self.fps),
        )

    # -- stage ------------------------------------------------------------------------------
    def process(self, task: Clip) -> Clip:
        src = task.source.video_path
        if not src or not Path(src).is_file():
            raise StageError(f"clip {task.clip_id}: source video {src!r} is missing; run the download stage first")
        start_s, end_s = float(task.start_s), float(task.end_s)
        n_frames = tick_count(start_s, end_s, self.fps)
        n_samples = int(round((end_s - start_s) * self.audio_rate))
        if n_frames < 1:
            raise StageError(f"clip {task.clip_id}: empty shot [{start_s:.3f}, {end_s:.3f}) s of {task.source.url}")

        clips = DatasetRoot(self.root).clips_dir
        clips.mkdir(parents=True, exist_ok=True)
        mp4, wav = clips / f"{task.clip_id}.mp4", clips / f"{task.clip_id}.wav"
        if self._complete(mp4, wav, n_frames, n_samples):
            return self._fill(task, mp4, wav)

        try:
            pr = media.probe(src)
        except media.MediaError as exc:
            raise StageError(f"clip {task.clip_id}: {exc}") from exc
        if not pr.has_audio:
            raise StageError(f"clip {task.clip_id}: no audio stream in {task.source.url}: clips need sound")

        tag = f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}-{task.clip_id}"
        tmp_mp4, tmp_wav = clips / f"{tag}.mp4", clips / f"{tag}.wav"
        try:
            written = self._encode(src, pr, start_s, end_s, n_frames, n_samples, tmp_mp4, tmp_wav, task)
            if written != n_frames:
                raise StageError(
                    f"clip {task.clip_id}: decoded {written} of {n_frames} frames of "
                    f"[{start_s:.3f}, {end_s:.3f}) s from {task.source.url}; the file may be truncated"
                )
            ws = wav_samples(tmp_wav)
            if ws is None or ws[0] != n_samples:
                raise StageError(
                    f"clip {task.clip_id}: audio of [{start_s:.3f}, {end_s:.3f}) s from {task.source.url} "
                    f"came out with {ws[0] if ws else 0} of {n_samples} samples; the audio stream may be broken"
                )
            os.replace(tmp_wav, wav)
            os.replace(tmp_mp4, mp4)
        finally:
            for p in (tmp_mp4, tmp_wav):
                p.unlink(missing_ok=True)
        return self._fill(task, mp4, wav)

    def _encode(self, src, pr, start_s, end_s, n_frames, n_samples, tmp_mp4, tmp_wav, task) -> int:
        """Pipe the ticks' frames into ffmpeg; returns how many frames were written."""
        w, h = int(pr.width), int(pr.height)  # as displayed: iter_frames applies rotation metadata
        even = w % 2 == 0 and h % 2 == 0
        fmt = "yuv420p" if even and not pr.rotation else "bgr24"  # a planar frame cannot be turned
        rate = Fraction(self.fps).limit_denominator(1001)
        margin = 3.0  # seek this far before the shot; -noaccurate_seek keeps every frame after it
        af = (
            f"[1:a:0]aresample={self.audio_rate},aformat=sample_fmts=s16:channel_layouts=mono,"
            f"atrim=start={start_s:.6f}:end={end_s + 1.0:.6f},asetpts=PTS-STARTPTS,"
            f"apad=whole_len={n_samples},atrim=end_sample={n_samples},asplit=2[a_mp4][a_wav]"
        )
        vf = [] if even else ["-vf", "crop=trunc(iw/2)*2:trunc(ih/2)*2:0:0"]
        cmd = [
            media.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
            "-f", "rawvideo", "-pix_fmt", fmt, "-s", f"{w}x{h}", "-framerate", str(rate), "-i", "pipe:0",
            "-copyts", "-seek_timestamp", "1", "-noaccurate_seek",
            "-ss", f"{max(0.0, start_s - margin):.6f}", "-i", str(src),
            "-filter_complex", af,
            "-map", "0:v:0", *vf, "-c:v", "libx264", "-preset", self.preset, "-crf", str(self.crf),
            "-pix_fmt", "yuv420p", "-r", str(rate), "-frames:v", str(n_frames),
            "-map", "[a_mp4]", "-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart", str(tmp_mp4),
            "-map", "[a_wav]", "-c:a", "pcm_s16le", str(tmp_wav),
        ]  # fmt: skip
        written = 0
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
            try:
                for _k, _t, img in media.iter_frames(src, start_s, end_s, fps=self.fps, fmt=fmt):
                    if written >= n_frames:
                        break
                    proc.stdin.write(img.tobytes())
                    written += 1
            except BrokenPipeError:
                pass  # ffmpeg died: its stderr says why
            except Exception as exc:
                proc.kill()
                proc.wait()
                raise StageError(
                    f"clip {task.clip_id}: cannot decode {task.source.url} at "
                    f"[{start_s:.3f}, {end_s:.3f}) s ({type(exc).__name__}: {exc})"
                ) from exc
            finally:
                try:
                    proc.stdin.close()
                except BrokenPipeError:
                    pass
            rc = proc.wait()
            if rc != 0:
                err.seek(0)
                tail = err.read().decode(errors="replace").strip()[-800:]
                raise StageError(f"clip {task.clip_id}: ffmpeg failed on {task.source.url} ({ffmpeg_exit(rc)}): {tail}")
        return written
