"""download stage on real yt-dlp (generic extractor) against a local HTTP server, and local paths."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import socket
import threading
from pathlib import Path

import pytest

from talkset.items import Source, source_id_for
from talkset.stages.base import StageError
from talkset.stages.download import DownloadStage

SERVED = "visualvoice_noisy_restaurant.mp4"


@pytest.fixture(scope="module")
def clips_dir() -> Path:
    """../shared/data/clips (same location as tests/conftest.py's CLIPS)."""
    shared = Path(os.environ.get("TALKSET_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    d = shared / "data" / "clips"
    if not (d / SERVED).is_file():
        pytest.fail(f"missing shared test clips in {d}: tests need ../shared beside the checkout")
    return d


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        self.server.requests.append(self.path)  # type: ignore[attr-defined]
        super().do_GET()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # yt-dlp closes its sniffing request early: not an error


@pytest.fixture(scope="module")
def server(clips_dir):
    srv = _Server(("127.0.0.1", 0), functools.partial(_Handler, directory=str(clips_dir)))
    srv.requests = []
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    th.join(timeout=5)


def task_for(source: str) -> Source:
    return Source(url=source, source_id=source_id_for(source))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_url_download_is_exact_and_idempotent(server, clips_dir, tmp_path):
    url = f"http://127.0.0.1:{server.server_address[1]}/{SERVED}"
    stage = DownloadStage(root=str(tmp_path), timeout_s=60)
    out = stage.process(task_for(url))

    path = Path(out.video_path)
    assert path.is_absolute() and path.parent == tmp_path.resolve() / "videos"
    assert path.name == f"{source_id_for(url)}.mp4"
    assert sha256(path) == sha256(clips_dir / SERVED)
    assert out.url == url
    # probe facts of the shared clip (data/README.md: 9.0 s, 1280x720, 25 fps, AAC)
    assert (out.width, out.height) == (1280, 720)
    assert out.fps == pytest.approx(25.0)
    assert out.num_frames == 224
    assert out.duration_s == pytest.approx(8.96, abs=0.05)
    assert out.has_audio is True
    assert not list(path.parent.glob("*.part"))
    n_requests = len(server.requests)
    assert n_requests >= 1 and all(r.endswith(SERVED) for r in server.requests)

    # a second run finds the finished file and does not touch the network
    again = stage.process(task_for(url))
    assert again.video_path == out.video_path
    assert len(server.requests) == n_requests
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_url_404_is_stage_error(server, tmp_path):
    url = f"http://127.0.0.1:{server.server_address[1]}/no_such_clip.mp4"
    with pytest.raises(StageError) as ei:
        DownloadStage(root=str(tmp_path), timeout_s=30).process(task_for(url))
    msg = str(ei.value)
    assert url in msg and "404" in msg
    assert not list((tmp_path / "videos").glob("*"))  # no leftovers


def test_unreachable_port_is_stage_error(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/clip.mp4"
    with pytest.raises(StageError) as ei:
        DownloadStage(root=str(tmp_path), timeout_s=10).process(task_for(url))
    msg = str(ei.value)
    assert url in msg and "refused" in msg.lower()
    assert not list((tmp_path / "videos").glob("*"))


def test_local_path_is_linked_not_copied(clips_dir, tmp_path):
    src = clips_dir / "dvscripts_blackjournal.mp4"
    out = DownloadStage(root=str(tmp_path / "root")).process(task_for(str(src)))
    p = Path(out.video_path)
    assert p.is_symlink() and os.path.realpath(p) == str(src.resolve())
    assert (out.width, out.height, out.num_frames) == (480, 360, 2188)
    assert out.fps == pytest.approx(30000 / 1001)
    assert out.duration_s == pytest.approx(73.006, abs=0.01)
    # idempotent: same link again
    assert DownloadStage(root=str(tmp_path / "root")).process(task_for(str(src))).video_path == out.video_path


def test_missing_local_path(tmp_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(StageError, match=r"source not found: .*nope\.mp4"):
        DownloadStage(root=str(tmp_path / "root")).process(task_for(str(missing)))


def test_corrupt_file_is_not_a_video(tmp_path):
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(os.urandom(200_000))
    with pytest.raises(StageError, match=r"^not a video: .*corrupt\.mp4 \(.*\); check the file/URL"):
        DownloadStage(root=str(tmp_path / "root")).process(task_for(str(bad)))


def test_video_without_audio(clips_dir, tmp_path):
    src = clips_dir / "psd_goldeneye-vfr-drop3.mp4"
    with pytest.raises(StageError, match=r"no audio stream in .*psd_goldeneye-vfr-drop3\.mp4"):
        DownloadStage(root=str(tmp_path / "root")).process(task_for(str(src)))


def test_file_url_is_a_local_path(clips_dir, tmp_path):
    """Issue 12: ``file://`` URLs were mangled into ``<cwd>/file:/...``; percent-escapes are decoded."""
    from talkset.sources import read_sources

    spaced = tmp_path / "a clip é.mp4"
    spaced.symlink_to(clips_dir / SERVED)
    url = "file://" + str(spaced).replace(" ", "%20").replace("é", "%C3%A9")
    assert read_sources([url, str(spaced), f"file://localhost{spaced}"]) == [str((clips_dir / SERVED).resolve())]
    out = DownloadStage(root=str(tmp_path / "root")).process(task_for(url))  # the stage takes it as given too
    assert os.path.realpath(out.video_path) == str((clips_dir / SERVED).resolve())


def test_sources_file_with_bom_crlf_and_comments(tmp_path):
    from talkset.sources import read_sources

    f = tmp_path / "list.txt"
    f.write_bytes(b"\xef\xbb\xbf# my videos\r\n\r\n  /tmp/a.mp4  \r\nhttps://example.com/v.mp4\r\n#/tmp/skip.mp4\r\n"
                  b"/tmp/a.mp4\r\nhttp:/no-host\r\n")  # fmt: skip
    assert read_sources(sources_file=str(f)) == ["/tmp/a.mp4", "https://example.com/v.mp4", "http:/no-host"]
    with pytest.raises(StageError, match="malformed URL .*no host"):
        DownloadStage(root=str(tmp_path / "root")).process(task_for("http:/no-host"))


def test_dangling_symlink_directory_empty_and_still_image(clips_dir, tmp_path):
    from talkset.sources import read_sources

    root = str(tmp_path / "root")
    link = tmp_path / "dangling.mp4"
    link.symlink_to(tmp_path / "gone.mp4")
    assert read_sources([str(link)]) == [str(link)]  # not resolved to its missing target
    with pytest.raises(StageError, match=r"dangling symlink: .*dangling\.mp4 -> .*gone\.mp4"):
        DownloadStage(root=root).process(task_for(str(link)))
    with pytest.raises(StageError, match="is a directory"):
        DownloadStage(root=root).process(task_for(str(tmp_path)))
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(StageError, match=r"empty, 0 bytes"):
        DownloadStage(root=root).process(task_for(str(tmp_path / "empty.mp4")))
    from talkset.media import run_ffmpeg

    png = tmp_path / "still.png"
    run_ffmpeg(["-i", str(clips_dir / SERVED), "-frames:v", "1", str(png)], "png")
    with pytest.raises(StageError, match=r"a still image \(png\), not a video"):
        DownloadStage(root=root).process(task_for(str(png)))
    with pytest.raises(StageError, match=r"unsupported source .*'gopher'"):
        DownloadStage(root=root).process(task_for("gopher://example.com/x.mp4"))
