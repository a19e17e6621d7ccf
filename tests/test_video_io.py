"""Video sources, the codec-probing writer, overlay and stats: real OpenCV files, no mocks."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from rtseg.errors import RtsegError
from rtseg.video.cvutil import gui_install_command, gui_unavailable_reason, opencv_distributions, opencv_gui_backend
from rtseg.video.overlay import bgr_palette, blend_labels, draw_fps
from rtseg.video.sources import LiveSource, open_file, open_source
from rtseg.video.stats import PipelineStats
from rtseg.video.writer import VideoWriter, count_frames, probe_codec

H, W = 64, 128


def _frame(i: int) -> np.ndarray:
    """A frame whose mean brightness encodes its index (survives lossy codecs)."""
    return np.full((H, W, 3), 10 + 6 * i, np.uint8)


def write_video(path: Path, n: int, fps: int = 15) -> Path:
    with VideoWriter(path, fps=fps) as w:
        for i in range(n):
            w.write(_frame(i))
    assert w.result is not None and w.result.frames_read_back == n
    return path


# --- writer -----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_probe_finds_a_codec_that_round_trips(suffix: str, tmp_path: Path) -> None:
    code = probe_codec(suffix, (H, W))
    assert code is not None
    p = tmp_path / f"x{suffix}"
    wr = VideoWriter(p, fps=12.4, codec=None)
    for i in range(7):
        wr.write(_frame(i))
    res = wr.close()
    assert res is not None
    assert res.codec == code and res.fps == 12  # integer fps
    assert res.frames_written == res.frames_read_back == 7
    assert count_frames(p) == (7, (H, W))
    assert not [q for q in tmp_path.iterdir() if q.name.startswith(".")]  # no temp file left behind


def test_writer_rejects_unknown_extension_and_finalizes_on_error(tmp_path: Path) -> None:
    with pytest.raises(RtsegError, match="unknown extension"):
        VideoWriter(tmp_path / "out.xyz")
    p = tmp_path / "partial.avi"
    with pytest.raises(RuntimeError):
        with VideoWriter(p) as w:
            for i in range(5):
                w.write(_frame(i))
            raise RuntimeError("stream broke")
    assert count_frames(p)[0] == 5  # finalized and playable despite the error
    with pytest.raises(ValueError, match="differs"):
        with VideoWriter(tmp_path / "sizes.avi") as w2:
            w2.write(_frame(0))
            w2.write(np.zeros((H + 2, W, 3), np.uint8))


# --- sources ----------------------------------------------------------------------------------


def test_file_source_delivers_every_frame_in_order_to_a_slow_consumer(tmp_path: Path) -> None:
    p = write_video(tmp_path / "in.avi", 24)
    src = open_file(p, queue_size=2)
    assert src.size == (H, W) and src.frame_count == 24 and src.fps == 15
    got = []
    with src:
        for f in src:
            got.append((f.index, float(f.image.mean())))
            time.sleep(0.005)  # slower than decoding: a file source must block, not drop
    assert [i for i, _ in got] == list(range(24))
    means = [m for _, m in got]
    assert all(abs(m - (10 + 6 * i)) < 2.5 for i, m in enumerate(means))
    assert src.dropped == 0 and src.end_reason == "end of file"


def test_live_policy_keeps_only_the_newest_frame_and_reports_disconnect(tmp_path: Path) -> None:
    p = write_video(tmp_path / "cam.avi", 40)
    cap = cv2.VideoCapture(str(p))
    ok, first = cap.read()
    assert ok
    src = LiveSource(cap, "camera-like file", first)
    src.max_failures = 3  # the file ends == the camera is unplugged
    seen = []
    with src:
        for f in src:
            seen.append(f.index)
            time.sleep(0.03)
    assert seen == sorted(seen) and len(seen) < 40
    assert src.dropped > 0 and src.captured == 40
    assert src.dropped + len(seen) == 40
    assert "stopped delivering frames" in (src.end_reason or "")


def test_truncated_file_ends_early_with_a_reason(tmp_path: Path) -> None:
    p = write_video(tmp_path / "full.avi", 30)
    data = p.read_bytes()
    t = tmp_path / "trunc.avi"
    t.write_bytes(data[: len(data) // 2])
    src = open_file(t)
    with src:
        n = sum(1 for _ in src)
    assert 0 < n < 30
    assert "ended early" in (src.end_reason or "")


def test_source_errors_are_one_clear_sentence(tmp_path: Path) -> None:
    with pytest.raises(RtsegError, match="not found"):
        open_source(str(tmp_path / "missing.mp4"))
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is a text file, not a video\n")
    with pytest.raises(RtsegError, match="not a video"):
        open_source(str(fake))
    with pytest.raises(RtsegError, match="camera 97 could not be opened"):
        open_source("97")
    with pytest.raises(RtsegError, match="directory"):
        open_source(str(tmp_path))


def test_synthetic_source_renders_frames_in_order() -> None:
    src = open_source("synthetic:48x96", synthetic_frames=5)
    assert src.kind == "synthetic" and src.size == (48, 96) and src.frame_count == 5
    with src:
        frames = list(src)
    assert [f.index for f in frames] == list(range(5))
    assert frames[0].image.shape == (48, 96, 3) and frames[0].image.dtype == np.uint8
    assert not np.array_equal(frames[0].image, frames[4].image)  # the camera moves
    assert src.end_reason == "end of the synthetic video" and len(src.capture_ms) == 4


def test_synthetic_video_renders_to_a_file_that_replays_every_frame(tmp_path: Path) -> None:
    from rtseg.video import render_synthetic_video

    written = render_synthetic_video(tmp_path / "street.avi", 6, (48, 96), seed=3)
    assert written.frames_written == written.frames_read_back == 6 and tuple(written.size_hw) == (48, 96)
    src = open_source(str(tmp_path / "street.avi"))
    assert src.kind == "file" and src.policy == "all" and src.size == (48, 96)
    with src:
        assert len(list(src)) == 6


# --- overlay, GUI detection, stats ---------------------------------------------------------------


def test_blend_uses_the_palette_in_bgr_and_nearest_resize() -> None:
    palette_rgb = [[255, 0, 0], [0, 0, 255]]  # class 0 red, class 1 blue (RGB)
    frame = np.zeros((H, W, 3), np.uint8)
    labels = np.zeros((H // 2, W // 2), np.uint8)
    labels[:, W // 4 :] = 1
    out = blend_labels(frame, labels, bgr_palette(palette_rgb), alpha=1.0)
    assert out.shape == (H, W, 3)
    assert out[0, 0].tolist() == [0, 0, 255]  # red in BGR
    assert out[0, -1].tolist() == [255, 0, 0]  # blue in BGR
    assert set(map(tuple, out.reshape(-1, 3).tolist())) == {(0, 0, 255), (255, 0, 0)}  # no blended ids
    half = blend_labels(np.full((H, W, 3), 100, np.uint8), labels, bgr_palette(palette_rgb), alpha=0.5)
    assert half[0, 0].tolist() == [50, 50, 178] or half[0, 0].tolist() == [50, 50, 177]
    assert np.array_equal(blend_labels(frame + 7, labels, bgr_palette(palette_rgb), alpha=0.0), frame + 7)
    img = np.full((H * 4, W * 4, 3), 200, np.uint8)
    draw_fps(img, 41.5, 39.0)
    assert not np.array_equal(img[:20, :60], np.full((20, 60, 3), 200, np.uint8))
    assert np.array_equal(img[-10:, -10:], np.full((10, 10, 3), 200, np.uint8))


def test_headless_opencv_is_detected() -> None:
    if opencv_gui_backend() is None:
        reason = gui_unavailable_reason()
        assert reason and "no GUI support" in reason and "--save" in reason
        assert f"`{gui_install_command(opencv_distributions())}`" in reason  # the exact command for this install
    else:  # pragma: no cover - a GUI build of OpenCV
        assert opencv_gui_backend()


def test_gui_install_command_replaces_the_headless_build() -> None:
    # the two builds share the cv2 folder: the headless one goes first, and a GUI one whose files it overwrote too
    assert gui_install_command(["opencv-python-headless"]) == "pip uninstall -y opencv-python-headless && pip install opencv-python"
    assert gui_install_command(["opencv-python", "opencv-python-headless"]) == (
        "pip uninstall -y opencv-python opencv-python-headless && pip install opencv-python")
    assert gui_install_command(["opencv-contrib-python-headless"]) == (
        "pip uninstall -y opencv-contrib-python-headless && pip install opencv-contrib-python")
    assert gui_install_command([]) == "pip install opencv-python"  # an OpenCV pip did not install


def test_stats_define_inference_and_end_to_end_fps() -> None:
    s = PipelineStats(window=3)
    t0 = 100.0
    for i in range(10):  # 20 ms of inference per frame, one frame out every 25 ms
        s.add("inference", 20.0)
        s.frame_done(t_in=t0 + 0.025 * i, t_out=t0 + 0.025 * i + 0.04, inference_ms=20.0)
    assert s.frames == 10
    assert s.inference_fps == pytest.approx(50.0)
    assert s.wall_s == pytest.approx(0.025 * 9 + 0.04)
    assert s.end_to_end_fps == pytest.approx(10 / (0.025 * 9 + 0.04))
    inf, e2e = s.rolling()
    assert inf == pytest.approx(50.0) and e2e == pytest.approx(40.0)
    summ = s.summary()
    assert summ["stages"]["latency"]["mean_ms"] == pytest.approx(40.0)
