"""The list of sources of a collection run: command-line arguments and / or a sources file.

A sources file is UTF-8 text, one source per line: a byte-order mark (as Windows editors write),
Windows (CRLF) or old Mac (CR) line endings, blank lines, whitespace around a source and lines
starting with ``#`` are ignored. A ``#`` later in a line is part of the source (file names and URL
fragments may hold one).

Normalisation (so that one file named twice is one source, with one outcome):

- a URL with a scheme (``http://``, ``https://``, ``ftp://``, or anything else of the form
  ``scheme://``, and ``http:`` / ``https:`` / ``ftp:`` with slashes missing) is kept as written; the download stage fetches the ones it supports and records a
  clear failure for the others;
- a ``file://`` URL becomes the absolute local path it names (percent-escapes decoded), as RFC 8089
  reads it: ``file:///tmp/a%20b.mp4`` -> ``/tmp/a b.mp4``; ``file://localhost/...`` is the same;
  another host is kept as written (and fails in the download stage as not local);
- a local path is made absolute (``~`` expanded, symlinks resolved, relative to the working
  directory); a path that does not exist (or a dangling symlink) is only made absolute, not
  resolved, and fails in the download stage with "source not found" ("dangling symlink").

Duplicates (after normalisation) are dropped, keeping the first occurrence's position.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_URL_LIKE = re.compile(r"^(https?|ftps?):", re.IGNORECASE)  # "http:/x" is a malformed URL, not a path


def normalize_source(source: str) -> str:
    """One source as the run uses it (see the module docstring): URLs as written, ``file://``
    URLs and paths as absolute local paths. Raises nothing: a bad source fails later, per source."""
    s = source.strip()
    if s.lower().startswith("file:"):
        p = urlparse(s)
        if p.netloc not in ("", "localhost"):
            return s  # a file on another host: not ours to read
        s = unquote(p.path)
    elif _SCHEME.match(s) or _URL_LIKE.match(s):
        return s
    path = Path(s).expanduser()
    if not path.exists():  # missing, or a dangling symlink: keep its own name for the error message
        return os.path.abspath(path)
    try:
        return str(path.resolve())
    except (OSError, RuntimeError):  # a symlink loop: keep it absolute, the download stage says why
        return os.path.abspath(path)


def read_sources_file(path: str | os.PathLike) -> list[str]:
    """The sources of a sources file (module docstring: BOM, CRLF, blanks and ``#`` comments ignored).

    Raises ``FileNotFoundError`` / ``ValueError`` (not UTF-8) with the file's name."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise FileNotFoundError(f"sources file not found: {p}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"sources file {p} is not UTF-8 text ({exc}); save it as UTF-8") from None
    out = []
    for line in text.splitlines():
        line = line.strip().lstrip("\ufeff").strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def read_sources(sources: list[str] | None = None, sources_file: str | None = None) -> list[str]:
    """Sources from arguments and/or a file (one per line; ``#`` comments and blanks ignored).
    Local paths and ``file://`` URLs are made absolute paths; duplicates are dropped keeping order."""
    out: list[str] = [s for s in (sources or []) if s and s.strip()]
    if sources_file:
        out += read_sources_file(sources_file)
    norm: list[str] = []
    seen: set[str] = set()
    for s in out:
        s = normalize_source(s)
        if s not in seen:
            seen.add(s)
            norm.append(s)
    return norm
