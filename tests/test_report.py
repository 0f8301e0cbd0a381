"""``talkset report``: the dataset card of the real blackjournal demo root, opened in headless
Chromium (Debian's ``chromium``; scripts/install.sh installs it) with its images checked."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from talkset.cli import main as cli_main
from talkset.report import gather

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        pytest.fail("the report test needs Debian's chromium (bash scripts/install.sh installs it)")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
           "--disable-extensions", "--disable-background-networking", "--proxy-server=127.0.0.1:9",
           "--hide-scrollbars", *args]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def card(blackjournal_root, tmp_path_factory):
    root, _ = blackjournal_root
    out = tmp_path_factory.mktemp("report") / "report.html"
    assert cli_main(["report", str(root), "-o", str(out)]) == 0
    return root, out


def test_figures_of_the_demo_root(blackjournal_root):
    root, _ = blackjournal_root
    f = gather(root)
    s = f["summary"]
    # README demo: one 61.6 s clip of 1541 frames with 2 person tracks, 2 shots, the close-up rejected
    assert s["clips"] == 1 and s["sources"] == 1 and s["person_tracks"] == 2 and s["frames"] == 2 * 1541
    assert s["hours"] == pytest.approx(61.64 / 3600, abs=0.1 / 3600)
    assert f["people_hist"] == [(2, 1)]
    assert f["resolutions"][0][:3] == (480, 360, 1)
    assert f["rejected"] == [("people=1", 1)]
    assert f["failures"] == []
    assert [p for p, _, _ in f["patterns"]] == ["talking-listening"]
    # the guest speaks in ~81 % of his frames, the interviewer seen from behind in ~0-5 %
    lo, hi = sorted(f["speaking_shares"])
    assert lo < 0.1 and 0.7 < hi < 0.95
    assert set(f["models"]) >= {"people", "pose", "faces", "speaking"}
    t1 = f["table1"]
    assert t1["People"] == "2" and t1["Resolution"] == "480x360" and t1["Total length"] == "0.02 h (1.0 min)"
    assert t1["Character"] == "real" and t1["Pose"].startswith("COCO-WholeBody 133")
    # a seated two-shot: hips of both people always visible, ankles in about half of the frames
    assert f["area_share"]["half body"] > 0.95 and 0.4 < f["area_share"]["full body"] < 0.65
    assert t1["Area"].startswith("full body")


def test_card_is_self_contained_and_renders_with_its_images(card, tmp_path):
    _, out = card
    page = out.read_text()
    for heading in ("MIT's Table 1", "Summary", "Distributions", "Resolutions", "Interaction patterns",
                    "Rejected shots", "Failures by stage", "Models and versions", "Frames with their annotations"):
        assert heading in page
    srcs = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert srcs and all(u.startswith("data:") for u in srcs), "every image must be inlined"
    n_svg = sum(u.startswith("data:image/svg+xml") for u in srcs)
    n_jpg = sum(u.startswith("data:image/jpeg") for u in srcs)
    assert n_svg == 5 and n_jpg == 1

    # every <img> decodes in Chromium (naturalWidth > 0), reported into the DOM after load
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", "<script>window.addEventListener('load', () => "
                                  "document.body.setAttribute('data-images', Array.from(document.images).map("
                                  "i => i.naturalWidth + 'x' + i.naturalHeight).join(' ')));</script></body>"))
    dom = _chromium("--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    sizes = re.search(r'data-images="([^"]*)"', dom.stdout).group(1).split()
    assert len(sizes) == 6
    assert sizes[:5] == ["460x230"] * 5  # the charts
    assert sizes[5] == "480x360"  # the thumbnail, the clip's own size

    # a screenshot: the thumbnail's red box (the guest speaking) and the charts' bars are on screen
    png = tmp_path / "card.png"
    shot = _chromium(f"--screenshot={png}", "--window-size=1100,4000", "--virtual-time-budget=10000", out.as_uri())
    assert shot.returncode == 0 and png.is_file(), shot.stderr[-2000:]
    import cv2

    img = cv2.imread(str(png))
    b, g, r = (img[..., i].astype(int) for i in range(3))
    red_box = (r > 220) & (g < 40) & (b < 40)
    bars = (abs(r - 0x3B) < 12) & (abs(g - 0x6E) < 12) & (abs(b - 0xA8) < 12)
    assert red_box.sum() > 200, "no red (speaking) box drawn in the thumbnail"
    assert bars.sum() > 2000, "no chart bars rendered"
    # the thumbnail is a photo: many distinct colours where the red box is
    ys, xs = np.nonzero(red_box)
    patch = img[ys.min():ys.max() + 1, xs.min():xs.max() + 1].reshape(-1, 3)
    assert len(np.unique(patch, axis=0)) > 500
    shutil.copy(png, Path(out).with_suffix(".png"))


def test_report_of_a_non_root_is_a_clear_error(tmp_path, capsys):
    assert cli_main(["report", str(tmp_path), "-o", str(tmp_path / "r.html")]) == 2
    assert "not a dataset root" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()
