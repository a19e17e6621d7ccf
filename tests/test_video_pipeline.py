"""The staged demo loop on a real tiny network (torch, through the Runner interface)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

import rtseg
from rtseg.data.synthetic import synthetic_info
from rtseg.errors import RtsegError
from rtseg.backends.runner import Runner, RunnerInfo
from rtseg.video import DemoOptions, FrameSource, count_frames, model_meta, open_source, run_demo
from rtseg.video.cvutil import opencv_gui_backend
from rtseg.video.writer import VideoWriter

HW = (64, 128)


class TinyTorchRunner(Runner):
    """baseline1 (random weights) on the CPU, carrying the synthetic dataset's metadata."""

    def __init__(self, hw: tuple[int, int] = HW, extra: dict | None = None, fail_after: int | None = None, batch: int = 1) -> None:
        info = synthetic_info()
        self.model = rtseg.build_model("baseline1", num_classes=info.num_classes).eval()
        self.info = RunnerInfo(
            "torch", torch.__version__, "cpu", "fp32", hw, batch, info.num_classes,
            extra={"data_info": info.to_dict()} if extra is None else extra,
        )
        self.calls = 0
        self.fail_after = fail_after

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("device lost")
        with torch.no_grad():
            return self.model(torch.from_numpy(batch)).numpy()


@pytest.fixture(scope="module")
def runner() -> TinyTorchRunner:
    return TinyTorchRunner()


def test_synthetic_run_saves_an_overlaid_video_and_measures_both_fps(runner: TinyTorchRunner, tmp_path: Path) -> None:
    out = tmp_path / "demo.mp4"
    src = open_source("synthetic", synthetic_hw=HW, synthetic_frames=12)
    seen: list[int] = []
    res = run_demo(src, runner, model_meta(runner), DemoOptions(save=out, warmup=1, baseline_iters=3), on_frame=lambda s: seen.append(s.frames))
    assert res.frames == 12 and seen == list(range(1, 13))
    assert res.end_reason == "end of the synthetic video" and res.dropped == 0
    assert res.output is not None and res.output.frames_read_back == 12
    assert count_frames(out) == (12, HW)
    rec = res.record
    for key in ("frames", "inference_fps", "end_to_end_fps", "standalone_inference_fps", "stages", "host", "source"):
        assert key in rec
    assert rec["inference_fps"] > 0 and rec["end_to_end_fps"] > 0
    # e2e cannot beat the inference stage on a serial network call
    assert rec["end_to_end_fps"] <= rec["inference_fps"] * 1.05
    assert set(rec["stages"]) == {"capture", "preprocess", "inference", "postprocess", "output", "latency"}
    assert all(v["n"] >= 11 for v in rec["stages"].values())
    assert rec["definitions"]["end_to_end_fps"].startswith("frames / wall time")


class _SlowSource(FrameSource):
    """Frames that take 30 ms each to arrive: slower than the network, so the network waits."""

    kind = "file"

    def __init__(self, n: int) -> None:
        self.left = n - 1
        super().__init__("slow", np.zeros((*HW, 3), np.uint8), 30.0, n)

    def _next_image(self) -> np.ndarray | None:
        if self.left == 0:
            return None
        self.left -= 1
        time.sleep(0.03)
        return np.full((*HW, 3), self.left, np.uint8)


class _ConstantRunner(TinyTorchRunner):
    """A network that answers at once (class 0 everywhere): far faster than the slow source."""

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return np.zeros((batch.shape[0], self.info.num_classes, *self.info.input_hw), np.float32)


def test_the_record_says_where_the_inference_thread_waited() -> None:
    fast = _ConstantRunner()
    res = run_demo(_SlowSource(8), fast, model_meta(fast), DemoOptions(warmup=0))
    rec = res.record
    assert rec["frames"] == 8 and set(rec["inference_waits_s"]) == {"for_input", "handing_on"}
    # 7 frames 30 ms apart: the network idled most of the run, waiting for frames, not for the output
    assert rec["inference_waits_s"]["for_input"] > 0.5 * rec["wall_s"] > 0.1
    assert rec["inference_waits_s"]["handing_on"] < rec["inference_waits_s"]["for_input"]
    assert rec["end_to_end_fps"] < 0.9 * rec["inference_fps"]


def test_file_source_is_resized_to_the_model_and_stopped_at_max_frames(runner: TinyTorchRunner, tmp_path: Path) -> None:
    vid = tmp_path / "in.avi"
    with VideoWriter(vid, fps=10) as w:
        rng = np.random.default_rng(0)
        for _ in range(15):
            w.write(rng.integers(0, 255, (96, 160, 3), dtype=np.uint8))
    out = tmp_path / "out.avi"
    res = run_demo(open_source(str(vid)), runner, model_meta(runner), DemoOptions(save=out, max_frames=6, warmup=0, alpha=0.3))
    assert res.frames == 6 and res.end_reason == "reached --frames 6"
    assert count_frames(out) == (6, (96, 160))  # written at the source's size, not the model's
    assert res.output is not None and res.output.fps == 10


def test_an_inference_error_still_finalizes_the_output(tmp_path: Path) -> None:
    r = TinyTorchRunner(fail_after=4)  # warm-up 0, so frames 1-4 succeed, the 5th fails
    out = tmp_path / "broken.avi"
    with pytest.raises(RuntimeError, match="device lost"):
        run_demo(open_source("synthetic", synthetic_hw=HW, synthetic_frames=20), r, model_meta(r), DemoOptions(save=out, warmup=0))
    n, hw = count_frames(out)
    assert 1 <= n <= 4 and hw == HW


def test_live_source_drops_stale_frames_and_accounts_for_every_one(runner: TinyTorchRunner, tmp_path: Path) -> None:
    import cv2

    from rtseg.video.sources import LiveSource

    vid = tmp_path / "camera.avi"
    with VideoWriter(vid, fps=30) as w:
        for i in range(60):
            w.write(np.full((*HW, 3), 4 * i, np.uint8))
    cap = cv2.VideoCapture(str(vid))
    ok, first = cap.read()
    assert ok
    src = LiveSource(cap, "camera-like", first)  # decodes far faster than the network runs
    src.max_failures = 3  # end of file == camera unplugged
    res = run_demo(src, runner, model_meta(runner), DemoOptions(warmup=0))
    assert res.captured == 60 and res.dropped > 0
    assert res.frames + res.dropped == res.captured
    assert "stopped delivering frames" in res.end_reason
    assert res.record["source"]["policy"] == "latest"


def test_ctrl_c_ends_the_run_cleanly_and_keeps_the_video(runner: TinyTorchRunner, tmp_path: Path) -> None:
    out = tmp_path / "interrupted.avi"

    def press_ctrl_c(stats) -> None:  # KeyboardInterrupt arrives on the main thread, as SIGINT does
        if stats.frames == 3:
            raise KeyboardInterrupt

    src = open_source("synthetic", synthetic_hw=HW, synthetic_frames=50)
    res = run_demo(src, runner, model_meta(runner), DemoOptions(save=out, warmup=0), on_frame=press_ctrl_c)
    assert res.end_reason == "interrupted (Ctrl-C)" and res.frames == 3
    assert count_frames(out) == (3, HW)
    assert src.end_reason == "stopped"


def test_bad_settings_are_user_errors(runner: TinyTorchRunner, tmp_path: Path) -> None:
    meta = model_meta(runner)
    with pytest.raises(RtsegError, match="alpha"):
        run_demo(open_source("synthetic:32x64", synthetic_frames=1), runner, meta, DemoOptions(alpha=1.5))
    with pytest.raises(RtsegError, match="batch 4"):
        r4 = TinyTorchRunner(batch=4)
        run_demo(open_source("synthetic:32x64", synthetic_frames=1), r4, model_meta(r4))
    with pytest.raises(RtsegError, match="no preprocessing metadata"):
        model_meta(TinyTorchRunner(extra={}))
    with pytest.raises(RtsegError, match="palette"):
        d = synthetic_info().to_dict()
        del d["palette"]
        model_meta(TinyTorchRunner(extra={"data_info": d}))
    if opencv_gui_backend() is None:
        with pytest.raises(RtsegError, match="no GUI support"):
            run_demo(open_source("synthetic:32x64", synthetic_frames=1), runner, meta, DemoOptions(show=True))


def test_meta_comes_from_the_model_not_from_constants() -> None:
    d = synthetic_info().to_dict()
    palette = [[i, 2 * i, 3 * i] for i in range(d["num_classes"])]
    d["mean"], d["std"], d["palette"] = [0.1, 0.2, 0.3], [0.5, 0.5, 0.5], palette
    m = model_meta(TinyTorchRunner(extra={"metadata": {"data_info": d}}))
    assert m.mean == (0.1, 0.2, 0.3) and m.std == (0.5, 0.5, 0.5) and m.palette == palette
    assert m.input_hw == HW
    # metadata that does not fit the model is refused, not drawn with: a palette short of the classes, a NaN mean
    for key, value, why in (("palette", palette[:2], "2 colours for 10 classes"), ("mean", [float("nan"), 0.2, 0.3], "three finite")):
        with pytest.raises(RtsegError, match=why):
            model_meta(TinyTorchRunner(extra={"metadata": {"data_info": dict(d, **{key: value})}}))
