"""download stage: bring one source (URL or local path) into ``root/videos`` and probe it.

- ``http(s)``/``ftp`` URLs are fetched with yt-dlp's Python API (``yt_dlp.YoutubeDL``) into
  ``root/videos/<source_id>.<ext>``: a direct media URL goes through yt-dlp's generic extractor,
  a YouTube-style page through its site extractor. yt-dlp writes ``<name>.part`` and renames it
  when complete, so a file named ``<source_id>.<ext>`` is complete; leftovers are removed on
  failure. Retries here are few on purpose: the flow's Prefect task retries with backoff.
- Local paths (or ``file://`` URLs) are linked, never copied: a symlink
  ``root/videos/<source_id><suffix>`` to the absolute path (hard link, then copy, only where the
  file system has no symlinks).

Idempotent: a source whose ``root/videos/<source_id>.<ext>`` already exists and probes as a video
is not fetched again (no network).

After the file is in place it is probed (``talkset.media.probe``, PyAV): not readable as a video,
or no audio stream, raises :class:`~talkset.stages.base.StageError`. A video with 0 or 1 decodable frames
passes here; the shots stage rejects it as ``too_short``.

Each bad input gets its own reason (tests/test_bad_inputs.py holds the whole corpus): a missing
path ("source not found"), a dangling symlink, a directory, an empty file, a still image ("a still
image ..., not a video"), audio only ("no video stream"), video only ("no audio stream"), a URL with
no host ("malformed URL"), an unknown scheme ("unsupported source"), an unreachable / refused / 404
URL ("download failed: ..." quoting yt-dlp). ``file://`` URLs are read as local paths (RFC 8089,
percent-escapes decoded); :func:`talkset.sources.read_sources` already turns them into paths.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar
from urllib.parse import unquote, urlparse

from talkset import media
from talkset.items import Source
from talkset.stages.base import Resources, Stage, StageError
from talkset.storage.root import TMP_PREFIX, DatasetRoot

URL_SCHEMES = ("http", "https", "ftp", "ftps")
# yt-dlp leftovers that never count as a finished download.
_PARTIAL_SUFFIXES = (".part", ".ytdl", ".temp", ".tmp")


def is_url(source: str) -> bool:
    """True for ``http(s)://`` / ``ftp(s)://`` sources (fetched with yt-dlp)."""
    return urlparse(source).scheme.lower() in URL_SCHEMES


class _YdlLogger:
    """Collects yt-dlp messages instead of printing them (its errors end up in the StageError)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        pass

    def error(self, msg: str) -> None:
        self.errors.append(msg)


def _clean_ydl_message(msg: str) -> str:
    msg = re.sub(r"\x1b\[[0-9;]*m", "", str(msg)).strip()
    return re.sub(r"^ERROR:\s*", "", msg)


@dataclass
class DownloadStage(Stage):
    """Fetch or link one source video and probe it.

    Parameters:
        root: dataset root; files go to ``DatasetRoot(root).videos``.
        timeout_s: limit for one download in seconds (socket timeout ``min(timeout_s, 60)``;
            the whole transfer is aborted once it has run longer than ``timeout_s``).
        format: yt-dlp format selector (best video up to 1080p plus best audio, or the best
            single file; a direct URL has one format and takes it).

    ``process(Source) -> Source`` reads ``url`` (the source as given) and sets ``video_path``
    (absolute path under ``root/videos``) and the probe fields ``duration_s`` (s),
    ``fps``, ``num_frames``, ``width``/``height`` (px), ``has_audio`` filled in.

    Raises :class:`StageError` for: a local path that does not exist, a failed download (the
    yt-dlp error is quoted), a file that is not a readable video, a video without an audio stream.
    """

    root: str
    timeout_s: float = 600
    format: str = "bv*[height<=?1080]+ba/b[height<=?1080]/b"

    name: ClassVar[str] = "download"
    resources: ClassVar[Resources] = Resources(cpus=0.5)
    reads: ClassVar[tuple[str, ...]] = ("url",)
    writes: ClassVar[tuple[str, ...]] = ("video_path", "duration_s", "fps", "num_frames", "width", "height", "has_audio")

    # -- helpers ----------------------------------------------------------------------------
    @property
    def videos_dir(self) -> Path:
        return DatasetRoot(self.root).videos

    def _existing(self, source_id: str) -> list[Path]:
        """Finished files ``<source_id>.<ext>`` (no ``.part``, no yt-dlp format intermediates)."""
        d = self.videos_dir
        if not d.is_dir():
            return []
        out = []
        for p in d.glob(f"{source_id}.*"):
            rest = p.name[len(source_id) + 1 :]
            if not rest or "." in rest or p.name.endswith(_PARTIAL_SUFFIXES):
                continue
            if p.is_file():  # follows symlinks: a dangling link does not count
                out.append(p)
        return sorted(out)

    def _remove_leftovers(self, source_id: str) -> None:
        d = self.videos_dir
        if not d.is_dir():
            return
        for p in list(d.glob(f"{source_id}.*")) + list(d.glob(f"{TMP_PREFIX}{source_id}*")):
            try:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
            except OSError:
                pass

    def model_info(self) -> dict[str, str]:
        try:
            import yt_dlp

            return {"yt-dlp": yt_dlp.version.__version__}
        except Exception:  # pragma: no cover - install problem
            return {}

    # -- fetching ---------------------------------------------------------------------------
    def _download(self, url: str, source_id: str) -> Path:
        import yt_dlp

        d = self.videos_dir
        d.mkdir(parents=True, exist_ok=True)
        self._remove_leftovers(source_id)  # stale .part files from a crashed run
        logger = _YdlLogger()
        started = time.monotonic()

        def watchdog(status: dict) -> None:
            if time.monotonic() - started > self.timeout_s:
                raise yt_dlp.utils.DownloadError(f"download took longer than timeout_s={self.timeout_s:g} s")

        opts = {
            "outtmpl": {"default": str(d / f"{source_id}.%(ext)s")},
            "format": self.format,
            "quiet": True,
            "no_warnings": True,
            "noprogress": True,
            "noplaylist": True,
            "playlistend": 1,  # a playlist URL yields its first video only: list videos one per line
            "socket_timeout": float(min(self.timeout_s, 60.0)),
            "retries": 2,
            "fragment_retries": 2,
            "extractor_retries": 1,
            "continuedl": False,
            "overwrites": True,
            "cachedir": False,
            "no_color": True,
            "logger": logger,
            "progress_hooks": [watchdog],
            "ffmpeg_location": media.ffmpeg_exe(),
        }
        try:
            with yt_dlp.YoutubeDL(opts) as ydl:
                info = ydl.extract_info(url, download=True)
        except Exception as exc:
            self._remove_leftovers(source_id)
            msg = _clean_ydl_message(logger.errors[-1] if logger.errors else str(exc))
            raise StageError(
                f"download failed: {url}: {msg}; check that the URL is reachable and public from this "
                "machine (or download the video yourself and pass its local path)"
            ) from exc
        if info is None:
            self._remove_leftovers(source_id)
            raise StageError(f"download failed: {url}: yt-dlp returned nothing; check the URL")
        paths = [rd.get("filepath") for rd in info.get("requested_downloads") or [] if rd.get("filepath")]
        paths = [Path(p) for p in paths if Path(p).is_file()]
        found = paths or self._existing(source_id)
        if not found:
            self._remove_leftovers(source_id)
            raise StageError(
                f"download failed: {url}: yt-dlp finished but wrote no file under {d}; check the URL"
            )
        return found[0].absolute()

    def _link_local(self, source: str, source_id: str) -> Path:
        p = urlparse(source)
        if p.scheme.lower() == "file":
            if p.netloc not in ("", "localhost"):
                raise StageError(
                    f"unsupported source {source!r}: a file:// URL on another host ({p.netloc}); "
                    "copy the file here or give an http(s) URL"
                )
            raw = unquote(p.path)
        else:
            raw = source
        src = Path(raw).expanduser()
        if not src.exists():
            if src.is_symlink():
                raise StageError(
                    f"source is a dangling symlink: {raw} -> {os.readlink(src)} (the target does not exist); "
                    "fix the link or pass the video itself"
                )
            raise StageError(f"source not found: {raw}; check the path (relative paths are from {os.getcwd()})")
        src = src.resolve()
        if src.is_dir():
            raise StageError(f"source is a directory, not a video file: {src}; list the videos in it one per line")
        if not src.is_file():
            raise StageError(f"source is not a file: {src}; pass a video file or a URL")
        if src.stat().st_size == 0:
            raise StageError(f"not a video: {source} (the file is empty, 0 bytes); check the file")
        d = self.videos_dir
        d.mkdir(parents=True, exist_ok=True)
        dest = d / f"{source_id}{src.suffix.lower() or '.video'}"
        if dest.is_symlink() and os.path.realpath(dest) == str(src):
            return dest.absolute()
        if not dest.is_symlink() and dest.is_file() and os.path.samefile(dest, src):
            return dest.absolute()
        tmp = d / f"{TMP_PREFIX}{source_id}-{os.getpid()}{dest.suffix}"
        tmp.unlink(missing_ok=True)
        try:
            try:
                os.symlink(src, tmp)
            except OSError:
                try:
                    os.link(src, tmp)
                except OSError:
                    shutil.copy2(src, tmp)
            os.replace(tmp, dest)
        finally:
            if tmp.is_symlink() or tmp.exists():
                tmp.unlink()
        return dest.absolute()

    # -- stage ------------------------------------------------------------------------------
    def process(self, task: Source) -> Source:
        source = task.url
        scheme = urlparse(source).scheme.lower()
        if is_url(source) and not urlparse(source).netloc:
            raise StageError(f"malformed URL {source!r}: no host; write it as scheme://host/path")
        if is_url(source):
            existing = [p for p in self._existing(task.source_id) if self._probe_ok(p)]
            path = existing[0].absolute() if existing else self._download(source, task.source_id)
            downloaded = True
        elif scheme in ("", "file") or re.match(r"^[A-Za-z]:[\\/]", source):
            path = self._link_local(source, task.source_id)
            downloaded = False
        else:
            raise StageError(
                f"unsupported source {source!r}: scheme {scheme!r} is not one of "
                f"{', '.join(URL_SCHEMES + ('file',))}; give an http(s) URL or a local file path"
            )

        try:
            pr = media.probe(path)
        except media.MediaError as exc:
            if downloaded:  # let a retry fetch it again
                self._remove_leftovers(task.source_id)
            else:
                Path(path).unlink(missing_ok=True)
            raise StageError(f"not a video: {source} ({exc}); check the file/URL") from exc
        if not pr.has_audio:
            raise StageError(f"no audio stream in {source}: talking-video clips need sound")

        return replace(
            task,
            video_path=str(path),
            duration_s=float(pr.duration_s),
            fps=float(pr.fps),
            num_frames=int(pr.num_frames),
            width=int(pr.width),
            height=int(pr.height),
            has_audio=bool(pr.has_audio),
        )

    @staticmethod
    def _probe_ok(path: Path) -> bool:
        try:
            media.probe(path)
            return True
        except media.MediaError:
            return False
