"""What every dataset shares: its description (:class:`DatasetInfo`), the exact input normalisation
(:func:`preprocess`), label colouring (:func:`colorize`) and the image/label pair dataset that
applies the transforms.

Nothing here imports torch at module level (only :class:`PairDataset` items are tensors, and torch is
imported on the first item fetched), so the deploy path (the demo's synthetic video, the model's
palette and normalisation) runs where PyTorch is not installed.

Normalisation convention (used by training, evaluation, export and the demo alike): the model takes
**RGB** images scaled to 0..1, minus ``mean``, divided by ``std`` (both per channel, on the 0..1
scale), laid out as float32 CHW. OpenCV reads BGR, so file loaders convert to RGB first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import cv2
import numpy as np

from rtseg.data.transforms import eval_transform, train_transform
from rtseg.errors import RtsegError

if TYPE_CHECKING:
    import torch

#: ImageNet statistics on the 0..1 RGB scale: the common choice for Cityscapes/CamVid training.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IGNORE_INDEX = 255


@dataclass
class DatasetInfo:
    """Describes a dataset's label space and the normalisation its models are trained with.

    ``mean``/``std`` are per RGB channel on the 0..1 scale (see :func:`preprocess`);
    ``palette`` holds one RGB triple per class; label value ``ignore_index`` is never scored.
    """

    name: str
    num_classes: int
    class_names: list[str]
    palette: list[list[int]]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    ignore_index: int = IGNORE_INDEX
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["palette"] = [list(map(int, c)) for c in self.palette]
        return d

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "DatasetInfo":
        try:
            return DatasetInfo(
                name=str(d["name"]),
                num_classes=int(d["num_classes"]),
                class_names=[str(n) for n in d["class_names"]],
                palette=[[int(v) for v in c] for c in d["palette"]],
                mean=tuple(float(v) for v in d["mean"]),  # type: ignore[arg-type]
                std=tuple(float(v) for v in d["std"]),  # type: ignore[arg-type]
                ignore_index=int(d.get("ignore_index", IGNORE_INDEX)),
                extra=dict(d.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RtsegError(f"malformed dataset description ({exc}); the file was not written by this rtseg") from None


def preprocess(
    rgb: np.ndarray,
    info_or_mean: DatasetInfo | Sequence[float],
    std: Sequence[float] | None = None,
    hw: tuple[int, int] | None = None,
) -> np.ndarray:
    """RGB uint8 HxWx3 -> normalised float32 CHW, exactly as in training (optionally resized to ``hw`` first).

    Pass a :class:`DatasetInfo` or ``mean, std`` (0..1 scale). Resizing uses bilinear interpolation,
    the same as the evaluation transform.
    """
    if isinstance(info_or_mean, DatasetInfo):
        mean, sd = info_or_mean.mean, info_or_mean.std
    else:
        if std is None:
            raise TypeError("preprocess(rgb, mean, std): std is required when mean is given")
        mean, sd = info_or_mean, std
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB image HxWx3, got shape {rgb.shape}")
    if hw is not None and tuple(rgb.shape[:2]) != tuple(hw):
        rgb = cv2.resize(rgb, (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)
    scale = np.asarray(sd, np.float32) * 255.0
    x = (rgb.astype(np.float32) - np.asarray(mean, np.float32) * 255.0) / scale
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def colorize(label: np.ndarray, palette: Sequence[Sequence[int]], ignore_color: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """Class-id map HxW -> RGB uint8 HxWx3; ignored or out-of-range ids get ``ignore_color``.

    The colours come out in the palette's channel order (pass BGR triples for OpenCV frames). A 2-D
    map goes through OpenCV's table lookup (``cv2.applyColorMap`` with the palette as the map, ~10x
    faster than NumPy indexing and off the GIL: the demo colours every frame on a thread of its own).
    """
    lut = np.zeros((256, 1, 3), np.uint8)
    lut[:] = np.asarray(ignore_color, np.uint8)
    pal = np.asarray(palette, np.uint8).reshape(-1, 3)[:256]
    lut[: len(pal), 0] = pal
    lab = np.asarray(label)
    if lab.dtype != np.uint8:
        lab = np.where((lab >= 0) & (lab < 256), lab, 255).astype(np.uint8)
    if lab.ndim == 2 and lab.size:
        return cv2.applyColorMap(np.ascontiguousarray(lab), lut)
    return lut[lab, 0]


def read_rgb(path: str) -> np.ndarray:
    """Read an image file as RGB uint8, or raise a clear error for a missing/corrupt file."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise RtsegError(f"cannot read image {path}: the file is missing, corrupt or not an image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_label(path: str) -> np.ndarray:
    """Read a single-channel class-id PNG as uint8, or raise a clear error."""
    lab = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if lab is None:
        raise RtsegError(f"cannot read label map {path}: the file is missing, corrupt or not an image")
    if lab.ndim != 2:
        raise RtsegError(f"label map {path} has {lab.shape[2]} channels; expected a single-channel PNG of class ids (not a colour image)")
    if lab.dtype != np.uint8:
        top = int(lab.max()) if lab.size else 0
        if top > 255 or (lab.size and int(lab.min()) < 0):
            raise RtsegError(f"label map {path} holds class id {top if top > 255 else int(lab.min())}, outside 0..255; "
                             "expected an 8-bit PNG of class ids")
        lab = lab.astype(np.uint8)
    return lab


def map_label_ids(lab: np.ndarray, to_train: np.ndarray, defined: np.ndarray, path: str | Path, dataset: str, ids: str) -> np.ndarray:
    """Train ids of a label map through the dataset's table ``to_train`` (256 entries), refusing an id
    the dataset does not define (``defined[id]`` false) with the file's name: an undefined id mapped
    to "ignored" would silently train on nothing (loss 0, mIoU NaN) and mapped to a class would train
    on wrong labels."""
    bad = ~defined[lab]
    if bad.any():
        values = ", ".join(str(int(v)) for v in np.unique(lab[bad])[:5])
        raise RtsegError(f"label map {path} holds class id(s) {values}, which {dataset} does not define ({ids}); "
                         "convert the labels to the dataset's ids first")
    return to_train[lab]


class PairDataset:
    """Base of every dataset: subclasses implement ``__len__`` and ``load(idx) -> (rgb uint8, label uint8)``.

    A map-style dataset as torch's ``DataLoader``, ``Subset`` and samplers take it (``__len__`` and
    ``__getitem__``); deliberately not a ``torch.utils.data.Dataset`` subclass, which would make
    importing any dataset module (and the synthetic renderer beside it) import torch.

    Items are ``(image float32 CHW normalised tensor, label int64 HW tensor)``. With ``augment`` the
    training transform runs (random scale, crop, flip, colour jitter); otherwise the image is resized
    to ``input_hw`` and so is the label (nearest), unless ``native_labels`` keeps labels at their
    original resolution (then predictions are upsampled to the label size, as in the official
    protocol).

    Augmentation randomness: an item may be fetched as ``ds[(epoch, idx)]`` (what the training
    loader's sampler yields, see :func:`rtseg.train.loader.make_loader`), then the transform draws from a
    generator seeded by ``(aug_seed, epoch, idx)``: the same in any worker, after a resume, on any
    rank. A plain ``ds[idx]`` draws the seed from torch's RNG instead.
    """

    #: seeds the per-(epoch, index) augmentation generator
    aug_seed: int = 0
    #: items of the split on disk before a ``length`` cut (None: the dataset is exactly what it holds)
    available: int | None = None

    info: DatasetInfo

    def __init__(self, info: DatasetInfo, input_hw: tuple[int, int], augment: bool, native_labels: bool = False) -> None:
        self.info = info
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.augment = augment
        self.native_labels = native_labels

    def load(self, idx: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        epoch: int | None = None
        if isinstance(key, tuple):
            epoch, idx = int(key[0]), int(key[1])
        else:
            idx = int(key)
        if idx < 0:
            idx += len(self)
        if not 0 <= idx < len(self):
            raise IndexError(idx)
        rgb, lab = self.load(idx)
        if self.augment:
            if epoch is None:
                rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
            else:
                rng = np.random.default_rng([int(self.aug_seed) & 0xFFFFFFFF, epoch, idx])
            rgb, lab = train_transform(rgb, lab, self.input_hw, rng, ignore_index=self.info.ignore_index)
        else:
            rgb, lab = eval_transform(rgb, lab, self.input_hw, keep_label=self.native_labels)
        x = torch.from_numpy(preprocess(rgb, self.info))
        y = torch.from_numpy(lab.astype(np.int64))
        return x, y


class FilePairDataset(PairDataset):
    """Base of the datasets read from disk (Cityscapes, CamVid): (image, label-id map) file pairs.

    A subclass gives only what differs between datasets: its layout (``find_pairs(root, split)``),
    its :class:`DatasetInfo` (``make_info()``) and its label mapping (``id_to_trainid``, the raw
    ids a label map may hold in ``defined_ids``, and how errors name both). Listing, the ``length``
    cut, reading and checking a pair are the same for all, and live here.
    """

    make_info: Callable[[], DatasetInfo]
    find_pairs: Callable[[str | Path, str], list[tuple[Path, Path]]]
    #: raw label id (0..255) -> train id (255: ignored)
    id_to_trainid: np.ndarray
    #: the raw ids a label map may hold (any other is refused with the map's name)
    defined_ids: np.ndarray
    #: how a refused label map names the dataset and its ids, e.g. ("CamVid", "0..10 classes, 11 void, 255 ignore")
    label_dataset: str
    label_ids: str

    def __init__(self, root: str | Path, split: str, input_hw: tuple[int, int], augment: bool, length: int | None = None,
                 native_labels: bool = False) -> None:
        super().__init__(self.make_info(), input_hw, augment, native_labels)
        self.pairs = self.find_pairs(root, split)
        self.available = len(self.pairs)
        if length is not None:
            if int(length) < 1:
                raise RtsegError(f"a {split} subset must hold at least one image, got {length}")
            self.pairs = self.pairs[: int(length)]

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        img_path, lab_path = self.pairs[idx]
        rgb = read_rgb(str(img_path))
        lab = read_label(str(lab_path))
        if lab.shape != rgb.shape[:2]:
            raise RtsegError(f"label map {lab_path} is {lab.shape[1]}x{lab.shape[0]} but its image is {rgb.shape[1]}x{rgb.shape[0]}")
        return rgb, map_label_ids(lab, self.id_to_trainid, self.defined_ids, lab_path, self.label_dataset, self.label_ids)


def check_split_root(root: str | Path, split: str, splits: Sequence[str], dataset: str, splits_word: str, data_hint: str) -> Path:
    """The dataset's root folder, after refusing an unknown split or a root that is not a folder."""
    root = Path(root).expanduser()
    if split not in splits:
        raise RtsegError(f"{dataset} has {splits_word} {', '.join(splits)}, not {split!r}")
    if not root.is_dir():
        raise RtsegError(f"{dataset} root {root} does not exist or is not a folder (pass --data {data_hint})")
    return root


def pair_with_labels(images: Sequence[Path], label_of: Callable[[Path], Path], dataset: str, hint: str = "") -> list[tuple[Path, Path]]:
    """Each image with its label map (``label_of(image)``); one error naming a missing map, ``hint`` appended."""
    pairs, missing = [], []
    for img in images:
        lab = label_of(img)
        (pairs if lab.is_file() else missing).append((img, lab))
    if missing:
        raise RtsegError(f"{len(missing)} {dataset} image(s) have no label map, e.g. {missing[0][1]} is missing{hint}")
    return pairs
