"""Shared test fixtures: real footage and weights from ../shared, offline switches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from talkset import env

env.configure(threads=1)

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TALKSET_SHARED", REPO.parent / "shared"))
CLIPS = SHARED / "data" / "clips"
GOLDENS = SHARED / "data" / "groundtruth" / "pyscenedetect"
WEIGHTS = SHARED / "weights"
os.environ.setdefault("TALKSET_WEIGHTS", str(WEIGHTS))


def clip(name: str) -> Path:
    p = CLIPS / name
    if not p.is_file():
        pytest.fail(f"missing shared test clip {p}: tests need ../shared beside the checkout")
    return p


@pytest.fixture(scope="session")
def shared_clips() -> Path:
    return CLIPS


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    return WEIGHTS


@pytest.fixture(scope="session")
def blackjournal() -> Path:
    return clip("dvscripts_blackjournal.mp4")


@pytest.fixture(scope="session")
def prefect_api():
    """A real, temporary Prefect API server (SQLite) for tests that run flows in-process.

    Stopped in teardown, while pytest still owns stdout (the implicit ephemeral server would be
    stopped at interpreter exit instead)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def blackjournal_root(tmp_path_factory, prefect_api):
    """The README demo, for real: `collect` with every stage on dvscripts_blackjournal.mp4.

    Session-scoped: the collection, annotation, SQL, render and notebook tests share this root."""
    from talkset.flows.collect import collect

    root = tmp_path_factory.mktemp("blackjournal-root")
    summary = collect(sources=[str(clip("dvscripts_blackjournal.mp4"))], root=str(root))
    return root, summary


def cut(src: Path, dst: Path, start_s: float, dur_s: float) -> Path:
    """``dur_s`` seconds of ``src`` from ``start_s``, re-encoded (H.264 + AAC) so cuts are exact."""
    from talkset.media import run_ffmpeg

    run_ffmpeg(
        ["-ss", f"{start_s}", "-i", str(src), "-t", f"{dur_s}", "-c:v", "libx264", "-preset", "ultrafast",
         "-crf", "18", "-c:a", "aac", "-ar", "44100", str(dst)],
        f"cut {src.name}",
    )
    return dst


def shot_task(path, start_s: float = 0.0, end_s: float | None = 4.0, shot_idx: int = 0):
    """A people-stage item for ``[start_s, end_s)`` s of a video (``end_s=None``: to its end), as the
    flow makes one: source id ``test``, clip id ``test-s<shot_idx:04d>``, 25 fps."""
    from talkset import media
    from talkset.items import Clip, Shot, Source

    if end_s is None:
        end_s = media.probe(path).duration_s
    video = Source(url=str(path), source_id="test", video_path=str(path))
    shot = Shot("test", shot_idx, 0, 0, start_s, end_s)
    return Clip(source=video, shot=shot, clip_id=f"test-s{shot_idx:04d}", clip_fps=25.0)


@pytest.fixture(scope="session")
def people_stage():
    """One PeopleStage (YOLO11n-pose loaded once) for the test modules that run it in-process."""
    from talkset.stages.people import PeopleStage

    s = PeopleStage()
    s.setup()
    return s
