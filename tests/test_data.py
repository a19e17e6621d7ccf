"""Datasets: the synthetic generator, the Cityscapes/CamVid loaders on tiny trees in their real
layouts, transforms, normalisation and the errors a user sees for a bad tree."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from rtseg.data import DatasetInfo, build_dataset, colorize, dataset_info, parse_data_spec, preprocess
from rtseg.data.synthetic import CLASS_NAMES, NUM_CLASSES, render_scene, scene_seed, video_frames
from rtseg.data.transforms import train_transform
from rtseg.errors import RtsegError


# ----------------------------------------------------------------------------- synthetic


def test_render_scene_is_deterministic_and_well_formed():
    a_rgb, a_lab = render_scene(3, 96, 192)
    b_rgb, b_lab = render_scene(3, 96, 192)
    assert a_rgb.shape == (96, 192, 3) and a_rgb.dtype == np.uint8
    assert a_lab.shape == (96, 192) and a_lab.dtype == np.uint8
    assert np.array_equal(a_rgb, b_rgb) and np.array_equal(a_lab, b_lab)
    c_rgb, c_lab = render_scene(4, 96, 192)
    assert not np.array_equal(a_lab, c_lab)
    assert int(a_lab.max()) < NUM_CLASSES


def test_synthetic_covers_all_classes_at_any_resolution():
    assert NUM_CLASSES >= 8 and len(CLASS_NAMES) == NUM_CLASSES
    seen = np.zeros(NUM_CLASSES, np.int64)
    for s in range(12):
        _, lab = render_scene(s, 128, 256)
        seen += np.bincount(lab.ravel(), minlength=NUM_CLASSES)
    assert (seen > 0).all(), dict(zip(CLASS_NAMES, seen.tolist()))
    # the same scene at another size and aspect is the same street, resampled
    _, small = render_scene(5, 64, 128)
    _, big = render_scene(5, 256, 512)
    down = cv2.resize(big, (128, 64), interpolation=cv2.INTER_NEAREST)
    assert (down == small).mean() > 0.85


def test_colour_alone_does_not_solve_synthetic():
    """A per-colour lookup fitted on training scenes must score poorly on validation scenes:
    the classes share colours, so context and detail are needed."""
    from rtseg.evaluate import metrics_from_confusion

    q = 8

    def key(rgb):
        b = (rgb // (256 // q)).astype(np.int64)
        return b[..., 0] * q * q + b[..., 1] * q + b[..., 2]

    counts = np.zeros((q**3, NUM_CLASSES), np.int64)
    for i in range(60):
        rgb, lab = render_scene(scene_seed(0, "train", i), 64, 128)
        np.add.at(counts, (key(rgb).ravel(), lab.ravel()), 1)
    lut = counts.argmax(1)
    cm = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    for i in range(30):
        rgb, lab = render_scene(scene_seed(0, "val", i), 64, 128)
        np.add.at(cm, (lab.ravel(), lut[key(rgb)].ravel()), 1)
    m = metrics_from_confusion(torch.tensor(cm))
    assert m["miou"] < 0.3, m["miou"]


def test_train_and_val_never_overlap():
    train = {scene_seed(s, "train", i) for s in range(3) for i in range(2000)}
    val = {scene_seed(s, "val", i) for s in range(3) for i in range(2000)}
    assert not train & val
    assert len(train) == 6000 and len(val) == 6000
    tr = build_dataset("synthetic", "train", (32, 64), augment=False, length=4)
    va = build_dataset("synthetic", "val", (32, 64), augment=False, length=4)
    for i in range(4):
        assert not torch.equal(tr[i][1], va[i][1])


def test_video_frames_are_temporally_coherent():
    frames = list(video_frames(6, 64, 128, seed=1))
    assert len(frames) == 6
    rgb, lab = frames[0]
    assert rgb.shape == (64, 128, 3) and rgb.dtype == np.uint8 and lab.shape == (64, 128)
    consecutive = np.mean([(frames[i][1] == frames[i + 1][1]).mean() for i in range(5)])
    other = next(video_frames(1, 64, 128, seed=2))[1]
    assert consecutive > 0.8
    assert consecutive > (frames[0][1] == other).mean() + 0.1
    assert not np.array_equal(frames[0][1], frames[5][1])  # the camera moves


def test_dataset_items_and_normalisation():
    ds = build_dataset("synthetic", "val", (32, 64), augment=False, length=3)
    assert len(ds) == 3 and ds.info.num_classes == NUM_CLASSES and ds.info.ignore_index == 255
    x, y = ds[1]
    assert x.shape == (3, 32, 64) and x.dtype == torch.float32
    assert y.shape == (32, 64) and y.dtype == torch.int64
    rgb, lab = render_scene(scene_seed(0, "val", 1), 32, 64)
    assert np.allclose(x.numpy(), preprocess(rgb, ds.info), atol=1e-6)
    manual = ((rgb / 255.0 - np.array(ds.info.mean)) / np.array(ds.info.std)).transpose(2, 0, 1)
    assert np.allclose(x.numpy(), manual, atol=1e-5)
    assert np.array_equal(y.numpy(), lab)
    # preprocess with explicit mean/std and a resize
    p = preprocess(rgb, ds.info.mean, ds.info.std, hw=(16, 32))
    assert p.shape == (3, 16, 32) and p.dtype == np.float32


def test_augmentation_is_seeded_per_epoch_and_item():
    ds = build_dataset("synthetic", "train", (32, 64), augment=True, length=2)
    a1, b1 = ds[(0, 1)]
    a2, b2 = ds[(0, 1)]
    a3, _ = ds[(1, 1)]
    assert torch.equal(a1, a2) and torch.equal(b1, b2)
    assert not torch.equal(a1, a3)


def test_train_transform_scale_crop_flip_pad():
    rng = np.random.default_rng(0)
    rgb = np.full((40, 80, 3), 200, np.uint8)
    lab = np.zeros((40, 80), np.uint8)
    lab[:, :40] = 1
    out_rgb, out_lab = train_transform(rgb, lab, (40, 80), rng, scale_range=(0.5, 0.5), jitter=0.0)
    assert out_rgb.shape == (40, 80, 3) and out_lab.shape == (40, 80)
    assert (out_lab == 255).mean() == pytest.approx(0.75, abs=0.02)  # padding is ignored, never scored
    assert set(np.unique(out_lab)) <= {0, 1, 255}
    out_rgb, out_lab = train_transform(rgb, lab, (20, 40), rng, scale_range=(1.5, 1.5))
    assert out_rgb.shape == (20, 40, 3) and set(np.unique(out_lab)) <= {0, 1}


def test_colorize():
    lab = np.array([[0, 1], [255, 7]], np.uint8)
    out = colorize(lab, [[10, 20, 30], [40, 50, 60]])
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [10, 20, 30] and out[0, 1].tolist() == [40, 50, 60]
    assert out[1, 0].tolist() == [0, 0, 0] and out[1, 1].tolist() == [0, 0, 0]
    # the OpenCV lookup (2-D maps) and the NumPy one (any other shape) agree, ignore colour included
    rng = np.random.default_rng(0)
    big = rng.integers(-3, 300, (37, 53))
    pal = rng.integers(0, 255, (19, 3)).tolist()
    fast = colorize(big, pal, ignore_color=(1, 2, 3))
    stacked = colorize(big[None], pal, ignore_color=(1, 2, 3))[0]
    assert fast.shape == (37, 53, 3) and (fast == stacked).all()
    inside = (big >= 0) & (big < 19)
    assert (fast[inside] == np.asarray(pal, np.uint8)[big[inside]]).all() and (fast[~inside] == [1, 2, 3]).all()


def test_dataset_info_round_trip():
    info = dataset_info("synthetic")
    assert DatasetInfo.from_dict(info.to_dict()) == info


def test_parse_data_spec(tmp_path):
    assert parse_data_spec("synthetic") == ("synthetic", None)
    assert parse_data_spec(f"cityscapes:{tmp_path}") == ("cityscapes", str(tmp_path))
    assert parse_data_spec("CamVid:~/cv")[1] == str(Path("~/cv").expanduser())
    for bad in ("imagenet", "cityscapes", "synthetic:/x", "camvid:"):
        with pytest.raises(RtsegError):
            parse_data_spec(bad)


# ----------------------------------------------------------------------------- cityscapes


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), arr)


def make_cityscapes(root: Path, h: int = 32, w: int = 64) -> None:
    """A tiny tree in the official layout: 2 train images (two cities), 1 val image."""
    rng = np.random.default_rng(0)
    items = [("train", "aachen", "aachen_000000_000019"), ("train", "bochum", "bochum_000000_000313"), ("val", "lindau", "lindau_000000_000019")]
    for split, city, stem in items:
        _png(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        ids = np.zeros((h, w), np.uint8)  # 0 unlabeled -> ignored
        ids[: h // 2] = 7  # road -> 0
        ids[h // 2 :, : w // 2] = 26  # car -> 13
        ids[h // 2 :, w // 2 :] = 33  # bicycle -> 18
        ids[0, 0] = 9  # parking -> ignored
        _png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", ids)


def test_cityscapes_tree_maps_to_train_ids(tmp_path):
    make_cityscapes(tmp_path)
    tr = build_dataset(f"cityscapes:{tmp_path}", "train", (16, 32), augment=False)
    va = build_dataset(f"cityscapes:{tmp_path}", "val", (16, 32), augment=True)
    assert len(tr) == 2 and len(va) == 1
    assert tr.info.num_classes == 19 and tr.info.class_names[0] == "road" and tr.info.class_names[18] == "bicycle"
    x, y = tr[0]
    assert x.shape == (3, 16, 32) and y.shape == (16, 32)
    assert set(torch.unique(y).tolist()) == {0, 13, 18, 255}
    assert y[0, 0] == 255 and y[0, 5] == 0 and y[-1, 0] == 13 and y[-1, -1] == 18
    # native labels keep the file's resolution
    nat = build_dataset(f"cityscapes:{tmp_path}", "val", (16, 32), augment=False, native_labels=True)
    assert nat[0][0].shape == (3, 16, 32) and nat[0][1].shape == (32, 64)
    assert build_dataset(f"cityscapes:{tmp_path}", "train", (16, 32), augment=False, length=1).__len__() == 1


def test_cityscapes_errors_name_what_is_missing(tmp_path):
    with pytest.raises(RtsegError, match="does not exist"):
        build_dataset(f"cityscapes:{tmp_path / 'nope'}", "train", (16, 32), augment=False)
    make_cityscapes(tmp_path)
    lab = tmp_path / "gtFine" / "train" / "bochum" / "bochum_000000_000313_gtFine_labelIds.png"
    lab.unlink()
    with pytest.raises(RtsegError, match="bochum_000000_000313_gtFine_labelIds.png"):
        build_dataset(f"cityscapes:{tmp_path}", "train", (16, 32), augment=False)
    import shutil

    shutil.rmtree(tmp_path / "gtFine" / "val")
    with pytest.raises(RtsegError, match=r"gtFine/val"):
        build_dataset(f"cityscapes:{tmp_path}", "val", (16, 32), augment=False)
    with pytest.raises(RtsegError, match="splits"):
        build_dataset(f"cityscapes:{tmp_path}", "test", (16, 32), augment=False)


def test_corrupt_files_give_clear_errors(tmp_path):
    make_cityscapes(tmp_path)
    img = tmp_path / "leftImg8bit" / "val" / "lindau" / "lindau_000000_000019_leftImg8bit.png"
    img.write_bytes(b"not a png at all")
    ds = build_dataset(f"cityscapes:{tmp_path}", "val", (16, 32), augment=False)
    with pytest.raises(RtsegError, match="corrupt"):
        ds[0]
    # a colour label image instead of ids
    lab = tmp_path / "gtFine" / "train" / "aachen" / "aachen_000000_000019_gtFine_labelIds.png"
    _png(lab, np.zeros((32, 64, 3), np.uint8))
    ds = build_dataset(f"cityscapes:{tmp_path}", "train", (16, 32), augment=False)
    with pytest.raises(RtsegError, match="single-channel"):
        ds[0]


# ----------------------------------------------------------------------------- camvid


def make_camvid(root: Path, h: int = 24, w: int = 32) -> None:
    rng = np.random.default_rng(1)
    for split, n in (("train", 2), ("val", 1), ("test", 1)):
        for i in range(n):
            _png(root / split / f"0001TP_{i:06d}.png", rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
            ids = np.full((h, w), 3, np.uint8)  # road
            ids[:4] = 0  # sky
            ids[-4:] = 11  # void -> ignored
            ids[10, 10] = 10  # bicyclist
            _png(root / f"{split}annot" / f"0001TP_{i:06d}.png", ids)


def test_camvid_tree(tmp_path):
    make_camvid(tmp_path)
    ds = build_dataset(f"camvid:{tmp_path}", "train", (24, 32), augment=False)
    assert len(ds) == 2 and ds.info.num_classes == 11
    _, y = ds[0]
    assert set(torch.unique(y).tolist()) == {0, 3, 10, 255}
    assert len(build_dataset(f"camvid:{tmp_path}", "test", (24, 32), augment=False)) == 1


def test_camvid_missing_annotations(tmp_path):
    make_camvid(tmp_path)
    import shutil

    shutil.rmtree(tmp_path / "valannot")
    with pytest.raises(RtsegError, match="valannot"):
        build_dataset(f"camvid:{tmp_path}", "val", (24, 32), augment=False)
    (tmp_path / "trainannot" / "0001TP_000001.png").unlink()
    with pytest.raises(RtsegError, match="0001TP_000001.png"):
        build_dataset(f"camvid:{tmp_path}", "train", (24, 32), augment=False)


def test_cli_bad_data_is_one_line_exit_2(cli, tmp_path):
    r = cli("train", "--arch", "baseline1", "--input", "32x64", "--data", f"cityscapes:{tmp_path / 'missing'}", "--out", tmp_path / "run")
    assert r.exit_code == 2, r.output
    assert r.output.strip().startswith("error:") and "does not exist" in r.output and "Traceback" not in r.output
    r = cli("train", "--arch", "baseline1", "--input", "32x64", "--data", "imagenet", "--out", tmp_path / "run")
    assert r.exit_code == 2 and "unknown dataset" in r.output
