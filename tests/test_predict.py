"""``rtseg predict``: image files, folders and globs in; overlays and label PNGs at each image's own
resolution out, in the model's class ids; non-images reported and counted. Real models: a built-in
arch on PyTorch and an exported ONNX file on ONNX Runtime."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from rtseg.errors import RtsegError
from rtseg.predict import collect_images, output_names, predict, read_image

SMALL = ("--input", "32x64", "--warmup", "0")


def _images(folder: Path) -> dict[str, Path]:
    """One image per format OpenCV reads, at odd sizes unlike the model's input (and each other)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    files = {
        "png": (folder / "street.png", rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)),
        "jpeg": (folder / "photo.JPG", rng.integers(0, 255, (90, 40, 3), dtype=np.uint8)),
        "bmp": (folder / "grey.bmp", rng.integers(0, 255, (33, 33), dtype=np.uint8)),  # one channel
        "tiff": (folder / "deep.tiff", rng.integers(0, 65535, (40, 60, 3), dtype=np.uint16)),  # 16 bit
    }
    for path, img in files.values():
        assert cv2.imwrite(str(path), img), path
    return {k: p for k, (p, _) in files.items()}


def _one_line_error(result, needle: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert "Traceback" not in result.output
    assert lines[-1].startswith("error:") or any(ln.startswith("error:") for ln in lines[-3:]), result.output
    assert needle in result.output, result.output


def test_collect_images_expands_folders_and_globs_and_refuses_wrong_paths(tmp_path: Path) -> None:
    imgs = _images(tmp_path / "imgs")
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    (tmp_path / "imgs" / "sub").mkdir()
    sub = tmp_path / "imgs" / "sub" / "inner.png"
    cv2.imwrite(str(sub), np.zeros((8, 8, 3), np.uint8))
    folder = collect_images([tmp_path / "imgs"])
    assert sorted(p.name for p in folder) == sorted(p.name for p in imgs.values())  # images only, not recursive
    assert collect_images([str(tmp_path / "imgs" / "**" / "*.png")]) == [imgs["png"], sub]  # ** recurses, sorted
    both = collect_images([imgs["png"], tmp_path / "imgs"])
    assert both[0] == imgs["png"] and len(both) == 4  # order kept, each file once
    assert collect_images([tmp_path / "imgs" / "notes.txt"]) == [tmp_path / "imgs" / "notes.txt"]  # named: tried anyway
    with pytest.raises(RtsegError, match="not found"):
        collect_images([tmp_path / "nope.png"])
    with pytest.raises(RtsegError, match="matches no files"):
        collect_images([str(tmp_path / "*.gif")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(RtsegError, match="holds no image files"):
        collect_images([tmp_path / "empty"])
    assert output_names([Path("a/x.png"), Path("b/x.jpg"), Path("c/X.png"), Path("y.png")]) == ["x", "x_1", "X_2", "y"]


def test_read_image_reasons(tmp_path: Path) -> None:
    (tmp_path / "fake.png").write_text("not a png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "clip.mp4").write_bytes(b"\x00" * 64)
    assert read_image(tmp_path / "fake.png") == (None, "not an image OpenCV can read")
    assert read_image(tmp_path / "empty.jpg") == (None, "an empty file")
    assert "rtseg demo --source" in read_image(tmp_path / "clip.mp4")[1]
    img, why = read_image(_images(tmp_path / "i")["bmp"])
    assert why is None and img.shape == (33, 33, 3) and img.dtype == np.uint8  # grey becomes BGR


def test_library_labels_are_class_ids_at_the_original_resolution(tmp_path: Path) -> None:
    from rtseg.data import preprocess
    from rtseg.runtime import load_runner
    from rtseg.video.meta import model_meta

    imgs = _images(tmp_path / "imgs")
    res = predict("baseline1", [tmp_path / "imgs"], tmp_path / "out", input_hw=(32, 64), save_mask=True, warmup=0, threads=1)
    assert len(res.done) == 4 and not res.skipped
    runner = load_runner("baseline1", input_hw=(32, 64), threads=1)
    meta = model_meta(runner)
    for r in res.done:
        src = cv2.imread(r.source, cv2.IMREAD_COLOR)
        h, w = src.shape[:2]
        assert r.size_hw == (h, w)
        overlay = cv2.imread(r.overlay, cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(r.mask, cv2.IMREAD_UNCHANGED)
        color = cv2.imread(r.mask_color, cv2.IMREAD_COLOR)
        assert overlay.shape == (h, w, 3) and color.shape == (h, w, 3)
        assert mask.shape == (h, w) and mask.dtype == np.uint8 and mask.max() < 19  # baseline1: 19 classes
        # the same labels the runner gives at its input size, resized back with nearest neighbour
        x = preprocess(cv2.cvtColor(cv2.resize(src, (64, 32), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB), meta.mean, meta.std)[None]
        want = cv2.resize(runner.predict(x)[0].astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
        assert (mask == want).all()
        # colours: the model's palette (RGB) at each class id, stored as BGR
        assert (color[..., ::-1] == np.asarray(meta.palette, np.uint8)[mask]).all()
    assert sorted(Path(r.overlay).name for r in res.done) == ["deep.tiff", "grey.bmp", "photo.jpg", "street.png"]  # formats kept
    rec = json.loads((tmp_path / "out" / "predict.json").read_text())
    assert rec["images_done"] == 4 and rec["backend"] == "torch" and rec["input_hw"] == [32, 64]
    assert rec["stages"]["inference"]["n"] == 4 and rec["stages"]["total"]["p90_ms"] > 0
    with pytest.raises(RtsegError, match="would overwrite the input"):
        predict("baseline1", [imgs["png"]], tmp_path / "imgs", input_hw=(32, 64), warmup=0)


def test_cli_builtin_model_reports_non_images_and_exits_2_at_the_end(cli, tmp_path: Path) -> None:
    _images(tmp_path / "imgs")
    (tmp_path / "imgs" / "notes.txt").write_text("hello")
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG but truncated")
    out = tmp_path / "out"
    r = cli("predict", "baseline1", tmp_path / "imgs", str(tmp_path / "imgs" / "*.txt"), "--out", out, *SMALL)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    skipped = [ln for ln in r.output.splitlines() if ln.startswith("skipped ")]
    assert len(skipped) == 2 and any("broken.png" in ln for ln in skipped) and any("notes.txt" in ln for ln in skipped)
    assert "error: 2 of 6 inputs could not be segmented" in r.output
    for needle in ("inference", "p90 ms", "mean ms", "street.png", "4 of 6 inputs segmented"):
        assert needle in r.output, r.output
    assert sorted(p.name for p in out.iterdir()) == ["deep.tiff", "grey.bmp", "photo.jpg", "predict.json", "street.png"]


def test_cli_exported_onnx_json_and_masks(cli, tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    r = cli("export", "baseline1", "--input", "32x64", "--fp32", "--no-simplify", "--no-check", "--out", exp)
    assert r.exit_code == 0, r.output
    imgs = _images(tmp_path / "imgs")
    out = tmp_path / "out"
    r = cli("predict", exp / "model.onnx", imgs["png"], imgs["tiff"], "--out", out, "--save-mask", "--json", "--threads", "1")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["backend"] == "onnxruntime" and d["input_hw"] == [32, 64]  # from the sidecar, no --input needed
    assert d["images_done"] == 2 and d["images_skipped"] == 0 and len(d["class_names"]) == 19
    assert set(d["stages"]) == {"read", "preprocess", "inference", "postprocess", "write", "total"}
    for im in d["images"]:
        mask = cv2.imread(im["mask"], cv2.IMREAD_UNCHANGED)
        assert mask.ndim == 2 and list(mask.shape) == im["size_hw"]
    assert (out / "masks" / "street.png").is_file() and (out / "masks_color" / "deep.png").is_file()


def test_cli_errors_are_one_line(cli, tmp_path: Path) -> None:
    _one_line_error(cli("predict", "baseline1", tmp_path / "nope.jpg", *SMALL), "image or folder not found")
    imgs = _images(tmp_path / "imgs")
    _one_line_error(cli("predict", "no-such-model", imgs["png"], *SMALL), "no-such-model")
    _one_line_error(cli("predict", "baseline1", imgs["png"], "--alpha", "2", *SMALL), "--alpha")
    (tmp_path / "file").write_text("x")
    _one_line_error(cli("predict", "baseline1", imgs["png"], "--out", tmp_path / "file", *SMALL), "a folder is expected")
