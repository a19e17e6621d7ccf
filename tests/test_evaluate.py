"""Metrics and checkpoints: the confusion-matrix mIoU equals torchmetrics' on the same predictions,
``rtseg eval`` end to end, and checkpoints load with weights_only and refuse mismatches."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from rtseg.checkpoint import load_checkpoint, load_model, save_checkpoint
from rtseg.data import build_dataset, dataset_info
from rtseg.errors import RtsegError
from rtseg.evaluate import ConfusionMatrix, evaluate, metrics_from_confusion
from rtseg.spaces import build_model, get_space, load_arch
from rtseg.train.loader import make_loader


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared 2-core machine an oversubscribed OpenMP pool is 10x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _random_batch(g, n=3, c=7, h=20, w=24, absent=()):
    target = torch.randint(0, c, (n, h, w), generator=g)
    pred = torch.where(torch.rand(n, h, w, generator=g) < 0.6, target, torch.randint(0, c, (n, h, w), generator=g))
    for k in absent:  # a class in neither labels nor predictions
        target[target == k] = 0
        pred[pred == k] = 1
    target[torch.rand(n, h, w, generator=g) < 0.1] = 255
    return pred, target


@pytest.mark.parametrize("absent", [(), (4,)])
def test_miou_matches_torchmetrics(absent):
    g = torch.Generator().manual_seed(0)
    c = 7
    cm = ConfusionMatrix(c, 255)
    jac = MulticlassJaccardIndex(num_classes=c, average="macro", ignore_index=255)
    per = MulticlassJaccardIndex(num_classes=c, average="none", ignore_index=255)
    acc = MulticlassAccuracy(num_classes=c, average="micro", ignore_index=255)
    for _ in range(4):
        pred, target = _random_batch(g, c=c, absent=absent)
        cm.update(pred, target)
        jac.update(pred, target)
        per.update(pred, target)
        acc.update(pred, target)
    m = cm.compute()
    assert abs(m["miou"] - float(jac.compute())) < 1e-6
    assert abs(m["pixel_accuracy"] - float(acc.compute())) < 1e-6
    ref = per.compute().tolist()
    for k, v in enumerate(m["per_class_iou"]):
        if k in absent:
            assert v is None  # no IoU for a class with an empty union; left out of the mean
        else:
            assert abs(v - ref[k]) < 1e-6


def test_confusion_matrix_against_numpy_and_merge():
    g = torch.Generator().manual_seed(1)
    pred, target = _random_batch(g, c=5)
    a, b = ConfusionMatrix(5), ConfusionMatrix(5)
    a.update(pred[:2], target[:2])
    b.update(pred[2:], target[2:])
    a.merge(b)
    t, p = target.numpy().ravel(), pred.numpy().ravel()
    keep = t != 255
    ref = np.zeros((5, 5), np.int64)
    np.add.at(ref, (t[keep], p[keep]), 1)
    assert np.array_equal(a.mat.numpy(), ref)
    iou = np.diag(ref) / (ref.sum(0) + ref.sum(1) - np.diag(ref))
    assert abs(metrics_from_confusion(a.mat)["miou"] - iou.mean()) < 1e-12
    with pytest.raises(ValueError):
        a.update(torch.zeros(4, dtype=torch.long), torch.tensor([0, 1, 9, 255]))


def _checkpoint(tmp_path, arch="baseline1", data="synthetic", seed=0):
    info = dataset_info(data)
    a = load_arch(arch).with_(num_classes=info.num_classes)
    a.name = arch
    torch.manual_seed(seed)
    model = build_model(a)
    # a not-untrained network: random BN statistics make predictions varied
    from conftest import randomize_bn

    randomize_bn(model, seed)
    path = save_checkpoint(tmp_path / "m.pt", model, a, info, {"epoch": 3, "note": "test"}, input_hw=(32, 64))
    return path, model, a, info


def test_rtseg_eval_json_equals_torchmetrics_on_same_predictions(cli, tmp_path):
    path, model, arch, info = _checkpoint(tmp_path)
    r = cli("eval", "--checkpoint", path, "--data", "synthetic", "--val-len", "6", "--batch", "2", "--workers", "0", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["input_hw"] == [32, 64] and out["images"] == 6
    assert 0.0 <= out["miou"] <= 1.0 and len(out["per_class_iou"]) == info.num_classes and 0 <= out["pixel_accuracy"] <= 1
    # independent implementation on the very same predictions
    model.eval()
    ds = build_dataset("synthetic", "val", (32, 64), augment=False, length=6)
    jac = MulticlassJaccardIndex(num_classes=info.num_classes, average="macro", ignore_index=255)
    with torch.no_grad():
        for i in range(len(ds)):
            x, y = ds[i]
            jac.update(model(x[None]).argmax(1), y[None])
    assert abs(out["miou"] - float(jac.compute())) < 1e-6
    # the library function agrees with the CLI
    m = evaluate(model, make_loader(ds, 3, False), info.num_classes, 255, "cpu")
    assert abs(m["miou"] - out["miou"]) < 1e-12


def test_eval_native_resolution_upsamples_logits(tmp_path):
    from test_data import make_cityscapes

    root = tmp_path / "cs"
    make_cityscapes(root)
    info = dataset_info(f"cityscapes:{root}")
    a = load_arch("baseline1")
    torch.manual_seed(0)
    model = build_model(a).eval()
    ds = build_dataset(f"cityscapes:{root}", "val", (16, 32), augment=False, native_labels=True)
    m = evaluate(model, make_loader(ds, 1, False), info.num_classes, 255, "cpu")
    assert m["pixels"] == 32 * 64 - 1  # every labelled pixel at native resolution, ignore skipped


def test_checkpoint_round_trip_weights_only(tmp_path):
    path, model, arch, info = _checkpoint(tmp_path)
    raw = torch.load(path, map_location="cpu", weights_only=True)  # the only way rtseg loads
    assert raw["format"] == "rtseg.checkpoint" and raw["schema_version"] == 1
    assert raw["input_hw"] == [32, 64] and raw["preprocess"]["mean"] == list(info.mean) and raw["epoch"] == 3
    state, meta = load_checkpoint(path, expected_arch=arch, num_classes=info.num_classes)
    assert meta["info"] == info and meta["arch_obj"].num_classes == info.num_classes
    loaded, _ = load_model(path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])


def test_checkpoint_refuses_mismatches_and_bad_files(tmp_path):
    path, model, arch, info = _checkpoint(tmp_path)
    with pytest.raises(RtsegError, match="19 are expected"):
        load_checkpoint(path, num_classes=19)
    sample = get_space("ssr").sample(random.Random(3), num_classes=info.num_classes)
    with pytest.raises(RtsegError, match="different network"):
        load_checkpoint(path, expected_arch=sample)
    with pytest.raises(RtsegError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(path.read_bytes()[:500])
    with pytest.raises(RtsegError, match="not a readable checkpoint"):
        load_checkpoint(trunc)
    bare = tmp_path / "bare.pt"
    torch.save(model.state_dict(), bare)
    with pytest.raises(RtsegError, match="bare state dict"):
        load_checkpoint(bare)

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "rtseg.checkpoint", "payload": Evil()}, evil)
    with pytest.raises(RtsegError, match="weights_only"):
        load_checkpoint(evil)


def test_cli_eval_refuses_wrong_class_count(cli, tmp_path):
    from test_data import make_cityscapes

    path, *_ = _checkpoint(tmp_path)
    make_cityscapes(tmp_path / "cs")
    r = cli("eval", "--checkpoint", path, "--data", f"cityscapes:{tmp_path / 'cs'}")
    assert r.exit_code == 2 and r.output.startswith("error:") and "10 classes" in r.output
    r = cli("eval", "--checkpoint", tmp_path / "nothing.pt")
    assert r.exit_code == 2 and "not found" in r.output
