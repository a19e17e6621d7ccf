"""Training: schedule, losses, loaders, and `rtseg train` end to end (run folder, resume, budget)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from rtseg.checkpoint import load_checkpoint
from rtseg.data import build_dataset
from rtseg.train.config import TrainConfig
from rtseg.train.loader import ShardSampler, make_loader
from rtseg.train.budget import TimeBudget
from rtseg.train.pipeline import train
from rtseg.train.step import OhemCELoss, build_loss, poly_lr

TINY = dict(batch=4, train_len=8, val_len=4, workers=0)


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared 2-core machine an oversubscribed OpenMP pool is 10x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_poly_lr():
    assert poly_lr(0.01, 0, 100) == 0.01
    assert poly_lr(0.01, 50, 100) == pytest.approx(0.01 * 0.5**0.9)
    assert poly_lr(0.01, 100, 100) == 0.0 and poly_lr(0.01, 150, 100) == 0.0
    lrs = [poly_lr(1.0, s, 10) for s in range(11)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_ohem_keeps_hard_pixels_and_at_least_n_min():
    # 10 pixels, 2 classes: 8 easy (p(true) ~ 0.99) and 2 hard (p(true) ~ 0.01)
    logits = torch.zeros(1, 2, 1, 10)
    logits[0, 0] = 4.6
    target = torch.zeros(1, 1, 10, dtype=torch.long)
    target[0, 0, :2] = 1  # hard: logits favour class 0
    per_pixel = F.cross_entropy(logits, target, reduction="none").flatten()
    loss = OhemCELoss(thresh=0.7, n_min=1)(logits, target)
    assert loss == pytest.approx(float(per_pixel[:2].mean()))
    # n_min larger than the hard set: the hardest n_min pixels are averaged
    loss = OhemCELoss(thresh=0.7, n_min=5)(logits, target)
    assert loss == pytest.approx(float(per_pixel.sort(descending=True).values[:5].mean()))
    # ignored pixels never count, an all-ignored batch gives a zero loss with a gradient
    target[0, 0, :2] = 255
    assert OhemCELoss(n_min=1)(logits, target) == pytest.approx(float(per_pixel[2:].max()))
    x = torch.zeros(1, 2, 2, 2, requires_grad=True)
    z = build_loss(True)(x, torch.full((1, 2, 2), 255))
    z.backward()
    assert z.item() == 0.0 and x.grad is not None
    assert float(build_loss(False)(logits, target)) == pytest.approx(float(per_pixel[2:].mean()))


def test_eval_loader_shards_cover_every_item_once():
    idx = [list(ShardSampler(11, 3, r)) for r in range(3)]
    flat = sorted(i for part in idx for i in part)
    assert flat == list(range(11))
    ds = build_dataset("synthetic", "train", (16, 32), augment=True, length=10)
    loader = make_loader(ds, 4, shuffle=True)
    loader.sampler.set_epoch(0)
    batches = list(loader)
    assert len(batches) == 2 and batches[0][0].shape == (4, 3, 16, 32)  # last partial batch dropped
    loader.sampler.set_epoch(0)
    again = list(loader)
    assert torch.equal(batches[0][0], again[0][0])  # same epoch, same order and augmentation
    with pytest.raises(Exception, match="fewer than one batch"):
        make_loader(ds, 16, shuffle=True)


def test_train_cli_run_folder_resume_and_refusal(cli, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--arch", "baseline1", "--input", "32x64", "--epochs", "2", "--batch", "4",
            "--train-len", "8", "--val-len", "4", "--workers", "0", "--out", out]
    r = cli(*args, "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["epochs"] == 2 and s["steps"] == 4 and s["stopped_by"] == "epochs" and s["world_size"] == 1
    assert 0 <= s["best_miou"] <= 1 and s["train_img_per_s"] > 0 and s["ranks_agree"]
    for name in ("config.json", "summary.json", "last.pt", "best.pt", "curve.png", "metrics/epoch_001.json", "metrics/epoch_002.json"):
        assert (out / name).is_file(), name
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rec = json.loads((out / "metrics" / "epoch_002.json").read_text())
    assert rec["epoch"] == 2 and math.isfinite(rec["train_loss"]) and "miou" in rec["val"] and rec["lr"] >= 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["input_hw"] == [32, 64] and cfg["arch"]["num_classes"] == 10 and cfg["data"] == "synthetic"
    state, meta = load_checkpoint(out / "last.pt", num_classes=10)
    assert meta["epoch"] == 2 and meta["input_hw"] == [32, 64] and "optimizer" in meta
    # a second run into the same folder is refused unless it resumes
    r = cli(*args)
    assert r.exit_code == 2 and "--resume" in r.output
    args[args.index("--epochs") + 1] = "3"
    r = cli(*args, "--resume", "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["epochs"] == 3 and s["steps"] == 6
    assert (out / "metrics" / "epoch_003.json").is_file()
    # resuming with another input size or batch is refused, in one line naming both; --epochs and --workers may change
    args[args.index("--input") + 1] = "64x64"
    args[args.index("--batch") + 1] = "2"
    args[args.index("--epochs") + 1] = "4"
    r = cli(*args, "--resume")
    assert r.exit_code == 2 and r.output.count("error:") == 1, r.output
    assert "--input [32, 64] (now [64, 64])" in r.output and "--batch 4 (now 2)" in r.output and "--epochs" not in r.output


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    cfg = TrainConfig(epochs=3, progress=False, **TINY)
    full = train("baseline1", "synthetic", (32, 64), cfg, tmp_path / "full")

    def interrupt(rec):
        if rec["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train("baseline1", "synthetic", (32, 64), cfg, tmp_path / "cut", on_epoch=interrupt)
    assert json.loads((tmp_path / "cut" / "metrics" / "epoch_001.json").read_text())["epoch"] == 1
    resumed = train("baseline1", "synthetic", (32, 64), TrainConfig(epochs=3, progress=False, resume=True, **TINY), tmp_path / "cut")
    assert resumed["steps"] == full["steps"] == 6
    assert resumed["ranks"][0]["weights"] == full["ranks"][0]["weights"]
    assert resumed["final"]["miou"] == pytest.approx(full["final"]["miou"], abs=1e-12)


def test_budget_sizes_the_schedule():
    b = TimeBudget(minutes=1.0, elapsed_before=0.0)
    assert b.total_steps(0, 10, 10_000) == 10_000  # no measurement yet: epochs bound the schedule
    b.step_time, b.val_time = 0.5, 1.0
    total = b.total_steps(0, 10, 10_000)
    # 60 s minus one validation, at 0.5 s per step plus a tenth of a validation per step
    assert abs(total - (60 - 1.0) / 0.6) <= 2
    assert b.total_steps(0, 10, 50) == 50  # epochs stay an upper bound
    assert not b.should_stop()
    b.before = 59.5  # half a second left, a validation needs one
    assert b.should_stop()


def test_time_budget_stops_cleanly_with_ohem(tmp_path):
    cfg = TrainConfig(epochs=1000, minutes=0.05, ohem=True, amp=True, progress=False, **TINY)
    s = train("baseline1", "synthetic", (32, 64), cfg, tmp_path / "budget")
    assert s["stopped_by"] == "budget" and 1 <= s["epochs"] < 1000
    assert (tmp_path / "budget" / "best.pt").is_file() and s["final"] is not None
    recs = [json.loads(p.read_text()) for p in sorted((tmp_path / "budget" / "metrics").glob("epoch_*.json"))]
    assert len(recs) == s["epochs"]
    if len(recs) >= 3:  # the schedule decays towards the budget's end
        assert recs[-1]["lr"] < recs[0]["lr"]


@pytest.mark.slow
def test_training_learns(tmp_path):
    """A few dozen steps on synthetic scenes must beat the majority-class guess clearly."""
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=6, batch=8, train_len=64, val_len=16, workers=0, progress=False)
    s = train("baseline1", "synthetic", (64, 128), cfg, tmp_path / "learn")
    losses = [json.loads((tmp_path / "learn" / "metrics" / f"epoch_{e:03d}.json").read_text())["train_loss"] for e in range(1, 7)]
    assert losses[-1] < 0.75 * losses[0], losses
    assert s["final"]["pixel_accuracy"] > 0.6 and s["best_miou"] > 0.15, s["final"]
