"""Builds the bad-input corpus of tests/test_bad_inputs.py with ffmpeg from ../shared/data/clips.

Kept beside the test (not a fixture module) so that benchmarks can rebuild the same inputs.
"""

from __future__ import annotations

import os
from pathlib import Path

from talkset.media import run_ffmpeg

IV_START = 2.0  # visualvoice_interview.mp4: two people seated, no cut in [2, 4) s
DUR = 1.0  # seconds of each valid input: 25 clip frames, one shot (min_shot_s 0.8 in the test)
AAC = ["-c:a", "aac", "-b:a", "64k"]
X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "23"]


def _ff(args: list[str], what: str) -> None:
    run_ffmpeg(args, what)


def build_corpus(d: Path, clips: Path) -> dict[str, Path]:
    """Write the corpus' files into ``d``; returns ``{case: path}`` (URL cases are added by the test)."""
    iv = str(clips / "visualvoice_interview.mp4")
    p: dict[str, Path] = {}

    def seg(name: str, vf: str, *extra: str, dur: float = DUR, out_args: list[str] | None = None) -> Path:
        out = d / name
        _ff(["-ss", f"{IV_START}", "-i", iv, "-t", f"{dur}", "-vf", vf, *extra,
             *(out_args if out_args is not None else [*X264, *AAC]), str(out)], name)  # fmt: skip
        return out

    p["base"] = seg("base.mp4", "scale=480:270")
    # ---- files that are not (usable) videos
    p["empty"] = d / "empty.mp4"
    p["empty"].write_bytes(b"")
    p["text"] = d / "notes.mp4"
    p["text"].write_text("this is a text file named .mp4\n" * 20)
    full = seg("full_index_at_end.mp4", "scale=480:270", dur=2.0)  # mp4 without faststart: index at the end
    p["truncated"] = d / "truncated.mp4"
    p["truncated"].write_bytes(full.read_bytes()[: full.stat().st_size * 6 // 10])
    full.unlink()
    p["directory"] = d / "a_directory.mp4"
    p["directory"].mkdir()
    p["dangling"] = d / "dangling.mp4"
    os.symlink(d / "gone-away.mp4", p["dangling"])
    p["missing"] = d / "does-not-exist.mp4"
    p["audio_only"] = d / "audio_only.m4a"
    _ff(["-ss", f"{IV_START}", "-i", iv, "-t", f"{DUR}", "-vn", *AAC, str(p["audio_only"])], "audio only")
    p["video_only"] = seg("video_only.mp4", "scale=480:270", "-an", out_args=X264)
    p["still_png"] = d / "still.png"
    _ff(["-ss", f"{IV_START}", "-i", iv, "-frames:v", "1", "-vf", "scale=480:270", str(p["still_png"])], "png")
    p["still_jpg_as_mp4"] = d / "photo.mp4"
    _ff(["-ss", f"{IV_START}", "-i", iv, "-frames:v", "1", "-vf", "scale=480:270", "-f", "image2",
         "-c:v", "mjpeg", str(p["still_jpg_as_mp4"])], "jpeg named .mp4")  # fmt: skip
    # ---- too short for a shot
    p["one_frame"] = seg("one_frame.mp4", "scale=480:270", "-frames:v", "1", dur=0.04)
    p["half_second"] = seg("half_second.mp4", "scale=480:270", dur=0.5)
    # ---- corrupt bytes in the middle: the NAL size fields of some video packets overwritten, so the decoder
    # refuses those packets (avcodec_send_packet: Invalid data) partway through the shot
    p["corrupt_mid"] = corrupt_packets(p["base"], d / "corrupt_mid.mp4", [10, 11])  # 2 of 25 packets
    p["corrupt_heavy"] = corrupt_packets(p["base"], d / "corrupt_heavy.mp4", list(range(3, 25, 2)))  # 11 of 25
    # ---- valid oddities: each must come out as a correct clip
    p["4k"] = seg("uhd_4k.mp4", "scale=3840:2160", dur=0.88)  # 22 frames
    p["portrait"] = seg("portrait.mp4", "crop=ih*3/4:ih,scale=360:480")
    # stored turned clockwise, tagged so that players (and ffmpeg) turn it back: rotate=90 (ffmpeg 5.1 writes
    # the display matrix that ffprobe reports as rotation=90, i.e. 90 degrees counter-clockwise on display)
    for name, content in (("rotation", "scale=480:270"), ("phone", "crop=ih*3/4:ih,scale=360:480")):
        stored = seg(f"{name}_stored.mp4", f"{content},transpose=clock",
                     out_args=[*X264, "-c:a", "aac", "-ac", "1", "-ar", "48000"])  # fmt: skip
        out = d / (f"{name}.mp4" if name == "rotation" else "IMG_0001.MOV")
        _ff(["-i", str(stored), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(out)], f"{name} tag")
        stored.unlink()
        p[name] = out
    p["fps60"] = seg("sixty_fps.mp4", "scale=480:270,fps=60")
    # variable frame rate: every 5th frame of the interview dropped, timestamps kept (gaps of 80 ms among 40 ms)
    p["vfr"] = seg("vfr.mp4", "scale=480:270,select='not(eq(mod(n\\,5)\\,3))'", "-fps_mode", "vfr")
    p["hevc_mkv"] = seg("hevc.mkv", "scale=480:270", out_args=["-c:v", "libx265", "-preset", "ultrafast",
                        "-x265-params", "log-level=error", *AAC])  # fmt: skip
    p["vp9_webm"] = seg("vp9_opus.webm", "scale=480:270", out_args=["-c:v", "libvpx-vp9", "-deadline", "realtime",
                        "-cpu-used", "8", "-crf", "20", "-b:v", "0", "-g", "100", "-c:a", "libopus", "-b:a", "48k"])  # fmt: skip
    p["audio_8k_mono"] = seg("audio_8k_mono.mp4", "scale=480:270", out_args=[*X264, "-c:a", "aac", "-ar", "8000", "-ac", "1"])
    p["two_audio"] = d / "two_audio_streams.mp4"
    _ff(["-ss", f"{IV_START}", "-i", iv, "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
         "-t", f"{DUR}", "-vf", "scale=480:270", "-map", "0:v", "-map", "0:a", "-map", "1:a", *X264, *AAC,
         str(p["two_audio"])], "two audio streams")  # fmt: skip
    p["audio_5_1"] = seg("audio_5_1.mp4", "scale=480:270", out_args=[*X264, "-c:a", "aac", "-ac", "6"])
    long_name = "long_" + "n" * 191 + ".mp4"  # 200 characters
    assert len(long_name) == 200
    p["long_name"] = d / long_name
    _copy(p["base"], p["long_name"])
    p["odd_name"] = d / "it's a \"talk\"; café — 日本 ✓.mp4"
    _copy(p["base"], p["odd_name"], reencode_crf="24")
    return p


def _copy(src: Path, dst: Path, reencode_crf: str | None = None) -> None:
    """A distinct file (different bytes) with the same content as ``src``."""
    if reencode_crf is None:
        dst.write_bytes(src.read_bytes())
    else:
        _ff(["-i", str(src), "-c:v", "libx264", "-preset", "ultrafast", "-crf", reencode_crf, "-c:a", "copy",
             str(dst)], "re-encode")  # fmt: skip


def corrupt_packets(src: Path, dst: Path, which: list[int]) -> Path:
    """``src`` with the first 8 bytes of its video packets number ``which`` (decode order) set to 0xff:
    an H.264 NAL size no decoder accepts. Returns ``dst``."""
    import av

    data = bytearray(src.read_bytes())
    with av.open(str(src)) as c:
        packets = [(pk.pos, pk.size) for pk in c.demux(c.streams.video[0]) if pk.size]
    for i in which:
        pos, _size = packets[i]
        data[pos : pos + 8] = b"\xff" * 8
    dst.write_bytes(bytes(data))
    return dst
