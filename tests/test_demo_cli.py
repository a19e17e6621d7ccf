"""``rtseg demo`` end to end through the CLI: real models, real video files, real errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rtseg.io import read_json
from rtseg.video import VideoWriter, count_frames
from rtseg.video.cvutil import opencv_gui_backend

FAST = ("--input", "64x128", "--warmup", "1", "--baseline", "2")


def _one_line_error(result, needle: str) -> None:
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert "Traceback" not in text
    assert text.startswith("error:") and needle in text, text
    assert len([ln for ln in text.splitlines() if ln.strip()]) <= 3  # one sentence (rich may wrap it)


def test_synthetic_run_with_save_and_json(cli, tmp_path: Path) -> None:
    out, rec = tmp_path / "demo.mp4", tmp_path / "record.json"
    r = cli("demo", "--model", "baseline1", "--source", "synthetic", "--frames", "8", "--save", out,
            "--no-show", "--json", "--record", rec, *FAST)
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["frames"] == 8 and d["inference_fps"] > 0 and d["end_to_end_fps"] > 0
    assert d["frames_dropped"] == 0 and d["source"]["kind"] == "synthetic"
    assert d["output"]["frames_read_back"] == 8
    assert count_frames(out) == (8, (64, 128))
    assert read_json(rec)["frames"] == 8
    assert d["host"]["cpu"] and d["input_hw"] == [64, 128]


def test_video_file_on_onnxruntime_prints_the_summary(cli, tmp_path: Path) -> None:
    vid = tmp_path / "street.avi"
    rng = np.random.default_rng(1)
    with VideoWriter(vid, fps=12) as w:
        for _ in range(6):
            w.write(rng.integers(0, 255, (72, 120, 3), dtype=np.uint8))
    out = tmp_path / "seg.avi"
    r = cli("demo", "-m", "baseline1", "--backend", "onnxruntime", "--threads", "1", "-s", vid, "--save", out, *FAST)
    assert r.exit_code == 0, r.output
    for needle in ("inference FPS", "end-to-end FPS", "p90 ms", "dropped", "ended: end of file", "6 read back"):
        assert needle in r.output, r.output
    assert count_frames(out) == (6, (72, 120))


def test_a_stream_that_ends_early_exits_cleanly_with_a_playable_file(cli, tmp_path: Path) -> None:
    full = tmp_path / "full.avi"
    with VideoWriter(full, fps=10) as w:
        for i in range(30):
            w.write(np.full((64, 128, 3), 5 * i, np.uint8))
    trunc = tmp_path / "trunc.avi"
    trunc.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    out = tmp_path / "out.mp4"
    r = cli("demo", "-m", "baseline1", "-s", trunc, "--save", out, "--json", *FAST)
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert "ended early" in d["end_reason"]
    assert 0 < d["frames"] < 30
    assert count_frames(out)[0] == d["frames"] == d["output"]["frames_read_back"]


def test_source_errors_are_one_line_and_exit_2(cli, tmp_path: Path) -> None:
    _one_line_error(cli("demo", "-m", "baseline1", "-s", "97", *FAST), "camera 97 could not be opened")
    _one_line_error(cli("demo", "-m", "baseline1", "-s", tmp_path / "nope.mp4", *FAST), "video file not found")
    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video at all\n")
    _one_line_error(cli("demo", "-m", "baseline1", "-s", fake, *FAST), "is not a video")


def test_option_errors_are_one_line_and_exit_2(cli, tmp_path: Path) -> None:
    _one_line_error(cli("demo", "-m", "baseline1", "--alpha", "1.5", *FAST), "--alpha")
    _one_line_error(cli("demo", "-m", "baseline1", "--frames", "0", *FAST), "--frames")
    _one_line_error(cli("demo", "-m", "baseline1", "--frames", "2", "--save", tmp_path / "x.xyz", *FAST), "unknown extension")
    _one_line_error(cli("demo", "-m", "no_such_model", "--frames", "2", *FAST), "no_such_model")
    _one_line_error(cli("demo", "-m", "baseline1", "-s", "synthetic:bad", *FAST), "bad input size")


@pytest.mark.skipif(opencv_gui_backend() is not None, reason="this OpenCV has GUI support")
def test_show_on_headless_opencv_says_so(cli) -> None:
    _one_line_error(cli("demo", "-m", "baseline1", "--show", "--frames", "2", *FAST), "no GUI support")


def test_an_onnx_file_without_metadata_is_refused_not_guessed(cli, tmp_path: Path) -> None:
    import torch

    import rtseg
    from rtseg.backends.onnx_export import export_onnx

    foreign = export_onnx(rtseg.build_model("baseline1").eval(), [torch.zeros(1, 3, 64, 128)], tmp_path / "foreign.onnx")
    _one_line_error(cli("demo", "-m", foreign, "--frames", "2", "--warmup", "0", "--baseline", "0"), "no preprocessing metadata")
