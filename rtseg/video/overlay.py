"""Drawing the segmentation over the frame: colorize with the model's palette, blend, FPS text.

The label map comes out at the model's input size; it is resized to the frame with nearest
neighbour (class ids must not be interpolated) and colored with :func:`rtseg.data.colorize` using
the palette recorded with the model (RGB triples, reversed here once to OpenCV's BGR order).
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from rtseg.data import colorize


def bgr_palette(palette_rgb: Sequence[Sequence[int]]) -> list[list[int]]:
    """RGB triples (how rtseg stores palettes) -> BGR triples (how OpenCV frames are laid out)."""
    return [[int(c[2]), int(c[1]), int(c[0])] for c in palette_rgb]


def blend_labels(frame_bgr: np.ndarray, labels: np.ndarray, palette_bgr: Sequence[Sequence[int]], alpha: float = 0.5) -> np.ndarray:
    """``(1 - alpha) * frame + alpha * colors(labels)``, labels resized to the frame (nearest).

    ``alpha`` 0 shows the frame only, 1 the color map only.
    """
    h, w = frame_bgr.shape[:2]
    lab = np.asarray(labels)
    if lab.dtype != np.uint8:
        lab = lab.astype(np.uint8)
    if lab.shape[:2] != (h, w):
        lab = cv2.resize(lab, (w, h), interpolation=cv2.INTER_NEAREST)
    colors = colorize(lab, palette_bgr)
    if alpha >= 1.0:
        return colors
    if alpha <= 0.0:
        return frame_bgr.copy()
    return cv2.addWeighted(frame_bgr, 1.0 - alpha, colors, alpha, 0.0)


def draw_fps(img: np.ndarray, inference_fps: float, end_to_end_fps: float) -> np.ndarray:
    """Write both rolling frame rates, labelled, in the top-left corner (in place; returns ``img``)."""
    h = img.shape[0]
    scale = max(0.35, min(1.0, h / 720.0))
    thick = 1 if scale < 0.7 else 2
    lines = [f"inference {inference_fps:5.1f} FPS", f"end-to-end {end_to_end_fps:5.1f} FPS"]
    (tw, th), base = cv2.getTextSize(max(lines, key=len), cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = max(3, int(6 * scale))
    step = th + base + pad
    box_h = pad + step * len(lines)
    x1, y1 = min(img.shape[1], tw + 2 * pad), min(h, box_h)
    roi = img[0:y1, 0:x1]
    img[0:y1, 0:x1] = (roi * 0.4).astype(np.uint8)  # darken the box so the text reads on any scene
    for i, text in enumerate(lines):
        y = pad + th + i * step
        cv2.putText(img, text, (pad, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return img
