"""Cityscapes in its standard layout, mapped to the 19 training classes (255 = ignored).

Accepted tree (what the official ``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip``
unpack to)::

    ROOT/leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    ROOT/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

``labelIds`` are mapped to train ids with the official table (cityscapesscripts ``labels.py``); every
id whose train id is 255 or -1 (unlabeled, ego vehicle, parking, guard rail, caravan, license
plate...) is ignored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtseg.data.base import DatasetInfo, FilePairDataset, check_split_root, pair_with_labels
from rtseg.errors import RtsegError

# (name, id, trainId, color) from cityscapesscripts/helpers/labels.py
LABELS: tuple[tuple[str, int, int, tuple[int, int, int]], ...] = (
    ("unlabeled", 0, 255, (0, 0, 0)),
    ("ego vehicle", 1, 255, (0, 0, 0)),
    ("rectification border", 2, 255, (0, 0, 0)),
    ("out of roi", 3, 255, (0, 0, 0)),
    ("static", 4, 255, (0, 0, 0)),
    ("dynamic", 5, 255, (111, 74, 0)),
    ("ground", 6, 255, (81, 0, 81)),
    ("road", 7, 0, (128, 64, 128)),
    ("sidewalk", 8, 1, (244, 35, 232)),
    ("parking", 9, 255, (250, 170, 160)),
    ("rail track", 10, 255, (230, 150, 140)),
    ("building", 11, 2, (70, 70, 70)),
    ("wall", 12, 3, (102, 102, 156)),
    ("fence", 13, 4, (190, 153, 153)),
    ("guard rail", 14, 255, (180, 165, 180)),
    ("bridge", 15, 255, (150, 100, 100)),
    ("tunnel", 16, 255, (150, 120, 90)),
    ("pole", 17, 5, (153, 153, 153)),
    ("polegroup", 18, 255, (153, 153, 153)),
    ("traffic light", 19, 6, (250, 170, 30)),
    ("traffic sign", 20, 7, (220, 220, 0)),
    ("vegetation", 21, 8, (107, 142, 35)),
    ("terrain", 22, 9, (152, 251, 152)),
    ("sky", 23, 10, (70, 130, 180)),
    ("person", 24, 11, (220, 20, 60)),
    ("rider", 25, 12, (255, 0, 0)),
    ("car", 26, 13, (0, 0, 142)),
    ("truck", 27, 14, (0, 0, 70)),
    ("bus", 28, 15, (0, 60, 100)),
    ("caravan", 29, 255, (0, 0, 90)),
    ("trailer", 30, 255, (0, 0, 110)),
    ("train", 31, 16, (0, 80, 100)),
    ("motorcycle", 32, 17, (0, 0, 230)),
    ("bicycle", 33, 18, (119, 11, 32)),
    ("license plate", -1, -1, (0, 0, 142)),
)

#: labelId (0..255) -> trainId (0..18 or 255)
ID_TO_TRAINID = np.full(256, 255, np.uint8)
for _name, _id, _tid, _c in LABELS:
    if 0 <= _id < 256 and 0 <= _tid < 255:
        ID_TO_TRAINID[_id] = _tid

#: the labelIds a Cityscapes label map may hold (0..33 in the official table)
DEFINED_IDS = np.zeros(256, bool)
for _name, _id, _tid, _c in LABELS:
    if 0 <= _id < 256:
        DEFINED_IDS[_id] = True

_TRAIN = sorted((tid, name, color) for name, _id, tid, color in LABELS if 0 <= tid < 255)
CLASS_NAMES = [name for _, name, _ in _TRAIN]
PALETTE = [list(color) for _, _, color in _TRAIN]
SPLITS = ("train", "val")


def cityscapes_info() -> DatasetInfo:
    return DatasetInfo(name="cityscapes", num_classes=19, class_names=CLASS_NAMES, palette=PALETTE)


def find_pairs(root: str | Path, split: str) -> list[tuple[Path, Path]]:
    """List (image, labelIds) pairs of a split, raising one clear error for a missing or malformed tree."""
    root = check_split_root(root, split, SPLITS, "cityscapes", "labelled splits", "cityscapes:/path/to/cityscapes")
    img_dir, gt_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    for d, what in ((img_dir, "images"), (gt_dir, "fine annotations")):
        if not d.is_dir():
            raise RtsegError(f"cityscapes tree at {root} lacks {d.relative_to(root)}/ ({what}); expected leftImg8bit/{split}/<city>/*_leftImg8bit.png and gtFine/{split}/<city>/*_gtFine_labelIds.png")
    images = sorted(img_dir.glob("*/*_leftImg8bit.png"))
    if not images:
        raise RtsegError(f"no images found under {img_dir} (expected <city>/<city>_<seq>_<frame>_leftImg8bit.png)")

    def label_of(img: Path) -> Path:
        stem = img.name[: -len("_leftImg8bit.png")]
        return gt_dir / img.parent.name / f"{stem}_gtFine_labelIds.png"

    return pair_with_labels(images, label_of, "cityscapes", f" (unpack gtFine_trainvaltest.zip into {root})")


class CityscapesDataset(FilePairDataset):
    """Cityscapes in its standard layout: labelIds mapped to the 19 train ids, the rest ignored."""

    make_info = staticmethod(cityscapes_info)
    find_pairs = staticmethod(find_pairs)
    id_to_trainid, defined_ids = ID_TO_TRAINID, DEFINED_IDS
    label_dataset, label_ids = "Cityscapes", "labelIds 0..33"
