"""Image/label transforms on numpy arrays (OpenCV), shared by every dataset.

Training follows the recipe of the SSR paper sec. 5.2 (colour jitter, random horizontal flip, random
scaling and cropping). Scales are relative to the *base size* ``input_hw``: a sample is first
resized to ``input_hw`` (Cityscapes 1024x2048 -> 512x1024 halves it, as the seed does), then scaled
by a factor in ``scale_range`` (default 0.75..1.75, which is the seed's 0.375..0.875 of the full
Cityscapes resolution), then cropped back to ``input_hw``; when the scaled sample is smaller it is
padded with zeros (image) and ``ignore_index`` (label), so padding is never scored.
Images are resized bilinearly, labels with nearest neighbour (class ids must not be blended).
"""

from __future__ import annotations

import cv2
import numpy as np

DEFAULT_SCALE_RANGE = (0.75, 1.75)


def resize_pair(rgb: np.ndarray, lab: np.ndarray | None, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
    h, w = hw
    if rgb.shape[:2] != (h, w):
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
    if lab is not None and lab.shape[:2] != (h, w):
        lab = cv2.resize(lab, (w, h), interpolation=cv2.INTER_NEAREST)
    return rgb, lab


def eval_transform(rgb: np.ndarray, lab: np.ndarray, input_hw: tuple[int, int], keep_label: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Resize the image to ``input_hw``; the label too unless ``keep_label`` (native-resolution scoring)."""
    rgb, lab2 = resize_pair(rgb, None if keep_label else lab, input_hw)
    return rgb, (lab if keep_label else lab2)  # type: ignore[return-value]


def color_jitter(rgb: np.ndarray, rng: np.random.Generator, strength: float = 0.3) -> np.ndarray:
    """Random brightness, contrast and saturation, each a factor in [1 - strength, 1 + strength]."""
    x = rgb.astype(np.float32)
    b, c, s = rng.uniform(1 - strength, 1 + strength, 3)
    x *= b
    gray = x @ np.array([0.299, 0.587, 0.114], np.float32)
    x = (x - gray.mean()) * c + gray.mean()
    gray = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    x = gray + (x - gray) * s
    return np.clip(x, 0, 255).astype(np.uint8)


def train_transform(
    rgb: np.ndarray,
    lab: np.ndarray,
    input_hw: tuple[int, int],
    rng: np.random.Generator,
    scale_range: tuple[float, float] = DEFAULT_SCALE_RANGE,
    flip: bool = True,
    jitter: float = 0.3,
    ignore_index: int = 255,
) -> tuple[np.ndarray, np.ndarray]:
    """Random scale (relative to ``input_hw``), crop to ``input_hw`` (pad with ignore), flip, colour jitter."""
    h, w = input_hw
    s = float(rng.uniform(*scale_range))
    sh, sw = max(1, int(round(h * s))), max(1, int(round(w * s)))
    rgb, lab = resize_pair(rgb, lab, (sh, sw))  # type: ignore[assignment]
    if sh < h or sw < w:
        ph, pw = max(0, h - sh), max(0, w - sw)
        top, left = int(rng.integers(0, ph + 1)), int(rng.integers(0, pw + 1))
        rgb = cv2.copyMakeBorder(rgb, top, ph - top, left, pw - left, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        lab = cv2.copyMakeBorder(lab, top, ph - top, left, pw - left, cv2.BORDER_CONSTANT, value=ignore_index)
    y0 = int(rng.integers(0, rgb.shape[0] - h + 1))
    x0 = int(rng.integers(0, rgb.shape[1] - w + 1))
    rgb, lab = rgb[y0 : y0 + h, x0 : x0 + w], lab[y0 : y0 + h, x0 : x0 + w]
    if flip and rng.random() < 0.5:
        rgb, lab = rgb[:, ::-1], lab[:, ::-1]
    if jitter > 0:
        rgb = color_jitter(rgb, rng, jitter)
    return np.ascontiguousarray(rgb), np.ascontiguousarray(lab)
