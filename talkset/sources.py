"""The list of sources of a collection run: command-line arguments and / or a sources file."""

from __future__ import annotations

from pathlib import Path


def read_sources(sources: list[str] | None = None, sources_file: str | None = None) -> list[str]:
    """Sources from arguments and/or a file (one per line; ``#`` comments and blanks ignored).
    Local paths are made absolute; duplicates are dropped keeping order."""
    out: list[str] = []
    for s in list(sources or []):
        out.append(s)
    if sources_file:
        for line in Path(sources_file).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                out.append(line)
    norm = []
    for s in out:
        if not s.startswith(("http://", "https://")):
            s = str(Path(s).expanduser().resolve())
        if s not in norm:
            norm.append(s)
    return norm
