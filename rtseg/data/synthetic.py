"""A procedural street-scene dataset: the offline default that works anywhere.

Why procedural: Cityscapes/CamVid cannot be downloaded on every machine, yet search and training
need data whose scores mean something. Each scene is a small 3-D world seen through a pinhole
camera (ground plane, road with lanes, sidewalks and curbs, building facades with window grids,
grass, trees, poles with signs, cars and pedestrians) drawn back to front, so that

* objects appear at many scales with perspective and occlude each other;
* colours overlap on purpose (grey road, grey sidewalk, grey facades, grey cars, overcast sky, grey
  poles; green grass vs. green trees; windows that reflect the sky colour), so a network cannot score
  by colour alone and must use context (what lies on the ground plane, above the horizon, on the road)
  and detail (textures, thin poles, small signs and people);
* lighting varies (global gain and colour cast, hard cast shadows across classes, vignetting,
  sensor noise, blur).

The street itself (what is where, in metres) is sampled in :mod:`rtseg.data.street`; this module
draws it. Everything is vectorised numpy + OpenCV drawing: a 256x512 scene renders in a few milliseconds.
The camera model is resolution-independent (focal length and horizon are fractions of the image
size), so a scene can be rendered at any resolution.

Classes (Cityscapes colours)::

    0 road  1 sidewalk  2 building  3 pole  4 traffic sign  5 vegetation  6 terrain  7 sky
    8 person  9 vehicle
"""

from __future__ import annotations

import functools
import math
from typing import Any, Iterator

import cv2
import numpy as np

from rtseg.data.base import DatasetInfo, PairDataset
from rtseg.data.street import Z_FAR, Z_NEAR, World, WorldObject, make_world
from rtseg.errors import RtsegError

CLASS_NAMES: tuple[str, ...] = (
    "road", "sidewalk", "building", "pole", "traffic sign",
    "vegetation", "terrain", "sky", "person", "vehicle",
)
PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (153, 153, 153), (220, 220, 0),
    (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60), (0, 0, 142),
)
ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION, TERRAIN, SKY, PERSON, VEHICLE = range(10)
NUM_CLASSES = len(CLASS_NAMES)


class _Canvas:
    """Draws world-space quads on the image and the label map with the same rasterisation."""

    def __init__(self, world: World, h: int, w: int, cam_z: float, yaw: float) -> None:
        self.w, self.h = w, h
        self.f = world.fx * w
        self.cx = w * (0.5 + yaw)
        self.cy = h * world.hy
        self.cam_h = world.cam_h
        self.cam_z = cam_z
        self.img = np.zeros((h, w, 3), np.uint8)
        self.lab = np.zeros((h, w), np.uint8)
        self.shift = 4  # sub-pixel precision of cv2 drawing
        self.scale = float(1 << self.shift)

    def project(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """World (X right, Y up from the ground, Z forward) to fixed-point pixel coordinates."""
        zc = np.maximum(np.subtract(z, self.cam_z, dtype=np.float64), Z_NEAR)
        inv = (self.f * self.scale) / zc
        u = self.cx * self.scale + np.multiply(x, inv)
        v = self.cy * self.scale + np.multiply(np.subtract(self.cam_h, y), inv)
        out = np.empty(np.broadcast_shapes(u.shape, v.shape) + (2,), np.float64)
        out[..., 0] = u
        out[..., 1] = v
        np.minimum(out, 1e7, out=out)
        np.maximum(out, -1e7, out=out)
        return out.astype(np.int32)

    def fill(self, polys: list[np.ndarray] | np.ndarray, color: tuple[int, int, int], cls: int | None) -> None:
        if len(polys) == 0:
            return
        cv2.fillPoly(self.img, list(polys), color, lineType=cv2.LINE_8, shift=self.shift)
        if cls is not None:
            cv2.fillPoly(self.lab, list(polys), int(cls), lineType=cv2.LINE_8, shift=self.shift)

    def ground_quad(self, x0: float, x1: float, z0: float, z1: float, y: float = 0.0) -> np.ndarray:
        z0 = max(z0, self.cam_z + Z_NEAR)
        return self.project(np.array([x0, x1, x1, x0]), np.full(4, y), np.array([z0, z0, z1, z1]))

    def radius(self, r: float, z: float) -> float:
        return self.f * r / max(z - self.cam_z, Z_NEAR)

    def xy(self, x: float, y: float, z: float) -> tuple[float, float]:
        zc = max(z - self.cam_z, Z_NEAR)
        return self.cx + self.f * x / zc, self.cy + self.f * (self.cam_h - y) / zc


def _draw_sky_and_far(c: _Canvas, wd: World, rng: np.random.Generator) -> None:
    h, w = c.h, c.w
    horizon = int(np.clip(round(c.cy), 0, h))
    t = np.linspace(0.0, 1.0, max(horizon, 1), dtype=np.float32)[:, None]
    top, bottom = np.asarray(wd.sky[0], np.float32), np.asarray(wd.sky[1], np.float32)
    grad = (top * (1 - t) + bottom * t).astype(np.uint8)
    c.img[:horizon] = grad[:horizon, None, :]
    c.lab[:horizon] = SKY
    c.img[horizon:] = wd.road_col
    c.lab[horizon:] = ROAD
    # distant skyline or tree line sitting on the horizon
    n = 24
    xs = np.linspace(-0.1 * w, 1.1 * w, n + 1)
    gen = np.random.default_rng(wd.seed + 7)
    hs = gen.uniform(0.0, 0.12, n) * h * (1.0 if wd.far == "skyline" else 0.6)
    polys = []
    for i in range(n):
        top_y = c.cy - hs[i]
        polys.append((np.array([[xs[i], c.cy + 1], [xs[i + 1], c.cy + 1], [xs[i + 1], top_y], [xs[i], top_y]]) * c.scale).astype(np.int32))
    if wd.far == "skyline":
        c.fill(polys, wd.far_col, BUILDING)
    else:
        c.fill(polys, (70, 95, 60), VEGETATION)
        for i in range(n):
            cv2.circle(c.img, (int(xs[i] + (xs[1] - xs[0]) / 2), int(c.cy - hs[i])), max(1, int((xs[1] - xs[0]) / 2)), (70, 95, 60), -1)
            cv2.circle(c.lab, (int(xs[i] + (xs[1] - xs[0]) / 2), int(c.cy - hs[i])), max(1, int((xs[1] - xs[0]) / 2)), VEGETATION, -1)


def _draw_ground(c: _Canvas, wd: World) -> None:
    zf = c.cam_z + Z_FAR * 4
    z0 = c.cam_z
    (rl, rr), (sl, sr), (tl, tr) = wd.road, wd.sidewalk, wd.terrain
    # beyond everything: grass or more pavement to the far left/right
    c.fill([c.ground_quad(rl - 400, rl, z0, zf)], wd.grass_col if tl > 0 else wd.walk_col, TERRAIN if tl > 0 else SIDEWALK)
    c.fill([c.ground_quad(rr, rr + 400, z0, zf)], wd.grass_col if tr > 0 else wd.walk_col, TERRAIN if tr > 0 else SIDEWALK)
    c.fill([c.ground_quad(rl - sl, rl, z0, zf), c.ground_quad(rr, rr + sr, z0, zf)], wd.walk_col, SIDEWALK)
    # paving-slab joints across the sidewalks (texture that is still "sidewalk")
    joint = tuple(int(v * 0.8) for v in wd.walk_col)
    zs = np.arange(np.floor(z0) + 1.0, z0 + 60.0, 1.5)[:, None]
    zz = np.concatenate([zs, zs, zs + 0.08, zs + 0.08], 1)
    for xa, xb in ((rl - sl, rl), (rr, rr + sr)):
        c.fill(list(c.project(np.array([xa, xb, xb, xa]), 0.0, zz)), joint, None)  # type: ignore[arg-type]
    c.fill([c.ground_quad(rl - 0.25, rl, z0, zf, 0.12), c.ground_quad(rr, rr + 0.25, z0, zf, 0.12)], wd.curb_col, SIDEWALK)
    c.fill([c.ground_quad(rl, rr, z0, zf)], wd.road_col, ROAD)
    # road markings: dashed lane lines and crosswalks are road
    marks = []
    for x in wd.lanes:
        start = math.floor(z0 / 9.0) * 9.0
        for z in np.arange(start, z0 + 120.0, 9.0):
            marks.append(c.ground_quad(x - 0.07, x + 0.07, z, z + 3.0))
    for zc in wd.crosswalks:
        for x in np.arange(rl + 0.3, rr - 0.3, 1.0):
            marks.append(c.ground_quad(x, x + 0.5, zc, zc + 3.5))
    paint = (225, 225, 215) if wd.road_col[0] < 110 else (245, 240, 200)
    c.fill(marks, paint, ROAD)


def _draw_building(c: _Canvas, b: tuple, rng: np.random.Generator) -> None:
    xb, z0, z1, height, facade, win, side = b
    z0 = max(z0, c.cam_z + Z_NEAR)
    if z1 <= z0:
        return
    quad = c.project(np.full(4, xb), np.array([0.0, 0.0, height, height]), np.array([z0, z1, z1, z0]))
    c.fill([quad], facade, BUILDING)
    # window grid on the facade: floors every ~3 m, columns every ~2.5 m
    floors = np.arange(1.0, height - 1.0, 3.0)
    cols = np.arange(z0 + 0.8, z1 - 1.2, 2.5)
    if len(floors) == 0 or len(cols) == 0:
        return
    fz, fy = np.meshgrid(cols, floors)
    fz, fy = fz.ravel(), fy.ravel()
    xs = np.full((fz.size, 4), xb)
    ys = np.stack([fy, fy, fy + 1.6, fy + 1.6], 1)
    zs = np.stack([fz, fz + 1.3, fz + 1.3, fz], 1)
    pts = c.project(xs, ys, zs)
    span = np.abs(pts[:, 1, 0] - pts[:, 0, 0])
    keep = span > c.scale  # skip windows narrower than a pixel
    if keep.any():
        c.fill(list(pts[keep]), win, BUILDING)
    # ground-floor door/shop front
    if height > 6:
        shop = c.project(np.full(4, xb), np.array([0.0, 0.0, 2.6, 2.6]), np.array([z0 + 0.5, z1 - 0.5, z1 - 0.5, z0 + 0.5]))
        c.fill([shop], tuple(int(v * 0.6) for v in facade), BUILDING)


def _draw_object(c: _Canvas, o: WorldObject, t: float) -> None:
    """Draw ``o`` where it is at time ``t`` (objects nearer than a metre to the camera are skipped)."""
    x, z = o.x + o.vx * t, o.z + o.vz * t
    if z - c.cam_z < 1.0:
        return
    if o.kind == "tree":
        _draw_tree(c, o, x, z)
    elif o.kind == "hedge":
        _draw_hedge(c, o, x, z)
    elif o.kind == "pole":
        _draw_pole(c, o, x, z)
    elif o.kind == "car":
        _draw_car(c, o, x, z)
    elif o.kind == "person":
        _draw_person(c, o, x, z, t)


def _draw_tree(c: _Canvas, o: WorldObject, x: float, z: float) -> None:
    """A trunk and five overlapping ellipses of foliage (their jitter seeded by the tree's place)."""
    trunk_h, crown, trunk_r = o.size
    leaf, bark = o.colors
    trunk = c.project(np.array([x - trunk_r, x + trunk_r, x + trunk_r, x - trunk_r]), np.array([0, 0, trunk_h + crown * 0.5, trunk_h + crown * 0.5]), np.full(4, z))
    c.fill([trunk], bark, VEGETATION)
    gen = np.random.default_rng(int(abs(o.x * 1000 + o.z * 7919)) % (2**31))
    for _ in range(5):
        dx, dy = gen.uniform(-0.6, 0.6, 2) * crown
        u, v = c.xy(x + dx, trunk_h + crown + dy * 0.7, z)
        rr = c.radius(crown * gen.uniform(0.5, 0.85), z)
        if rr < 0.5 or not (-rr < u < c.w + rr and -rr < v < c.h + rr):
            continue
        shade = tuple(int(np.clip(v_ * gen.uniform(0.75, 1.2), 0, 255)) for v_ in leaf)
        center, axes = (int(u * c.scale), int(v * c.scale)), (int(rr * c.scale), int(rr * 0.85 * c.scale))
        cv2.ellipse(c.img, center, axes, 0, 0, 360, shade, -1, cv2.LINE_8, c.shift)
        cv2.ellipse(c.lab, center, axes, 0, 0, 360, VEGETATION, -1, cv2.LINE_8, c.shift)


def _draw_hedge(c: _Canvas, o: WorldObject, x: float, z: float) -> None:
    """A hedge's front and top faces."""
    length, height, depth = o.size
    zz = max(z, c.cam_z + Z_NEAR)
    front = c.project(np.full(4, x), np.array([0, 0, height, height]), np.array([zz, z + length, z + length, zz]))
    top = c.project(np.array([x, x, x + depth, x + depth]), np.full(4, height), np.array([zz, z + length, z + length, zz]))
    c.fill([front, top], o.colors[0], VEGETATION)


def _draw_pole(c: _Canvas, o: WorldObject, x: float, z: float) -> None:
    """A pole and the sign it may carry."""
    height, r = o.size
    quad = c.project(np.array([x - r, x + r, x + r, x - r]), np.array([0, 0, height, height]), np.full(4, z))
    c.fill([quad], o.colors[0], POLE)
    _draw_sign(c, o.extra.get("sign"), x, z, height)


def _draw_car(c: _Canvas, o: WorldObject, x: float, z: float) -> None:
    """A car from behind: body, cabin, rear window, wheels and lights."""
    width, height = o.size
    body, glass, light = o.colors
    hw = width / 2
    lower = c.project(np.array([x - hw, x + hw, x + hw, x - hw]), np.array([0.25, 0.25, height * 0.55, height * 0.55]), np.full(4, z))
    cabin = c.project(np.array([x - hw, x + hw, x + hw * 0.8, x - hw * 0.8]), np.array([height * 0.55, height * 0.55, height, height]), np.full(4, z))
    c.fill([lower, cabin], body, VEHICLE)
    window = c.project(np.array([x - hw * 0.8, x + hw * 0.8, x + hw * 0.68, x - hw * 0.68]), np.array([height * 0.6, height * 0.6, height * 0.93, height * 0.93]), np.full(4, z))
    c.fill([window], glass, VEHICLE)
    wheels = [c.project(np.array([xx - 0.22, xx + 0.22, xx + 0.22, xx - 0.22]), np.array([0, 0, 0.35, 0.35]), np.full(4, z)) for xx in (x - hw + 0.3, x + hw - 0.3)]
    c.fill(wheels, (15, 15, 15), VEHICLE)
    lights = [c.project(np.array([xx - 0.15, xx + 0.15, xx + 0.15, xx - 0.15]), np.array([height * 0.4, height * 0.4, height * 0.5, height * 0.5]), np.full(4, z)) for xx in (x - hw + 0.2, x + hw - 0.2)]
    c.fill(lights, light, VEHICLE)


def _draw_sign(c: _Canvas, sign: tuple[Any, ...] | None, x: float, z: float, height: float) -> None:
    """A sign near the top of a pole: a disc, square or triangle with a rim (``sign``: shape, size, colour, rim colour)."""
    if sign is None:
        return
    shape, s, fg, rim = sign
    u, v = c.xy(x, height - s * 0.7, z)
    rad = c.radius(s / 2, z)
    if rad >= 0.7:
        cu, cv_ = int(u * c.scale), int(v * c.scale)
        ir = int(rad * c.scale)
        if shape == 0:
            cv2.circle(c.img, (cu, cv_), ir, rim, -1, cv2.LINE_8, c.shift)
            cv2.circle(c.img, (cu, cv_), int(ir * 0.75), fg, -1, cv2.LINE_8, c.shift)
            cv2.circle(c.lab, (cu, cv_), ir, SIGN, -1, cv2.LINE_8, c.shift)
        else:
            if shape == 1:
                pts = np.array([[cu - ir, cv_ - ir], [cu + ir, cv_ - ir], [cu + ir, cv_ + ir], [cu - ir, cv_ + ir]])
            else:
                pts = np.array([[cu, cv_ - ir], [cu + ir, cv_ + ir], [cu - ir, cv_ + ir]])
            pts = pts.astype(np.int32)
            c.fill([pts], rim, SIGN)
            inner = ((pts - [cu, cv_]) * 0.7 + [cu, cv_]).astype(np.int32)
            c.fill([inner], fg, None)


def _draw_person(c: _Canvas, o: WorldObject, x: float, z: float, t: float) -> None:
    """A walker: legs (swinging when moving), torso, arms and head."""
    (height,) = o.size
    skin, shirt, pants = o.colors
    phase = math.sin(t * 6.0 + o.z) * 0.12 if (o.vx or o.vz) else 0.0
    legs = [c.project(np.array([x + dx - 0.08, x + dx + 0.08, x + dx + 0.08, x + dx - 0.08]), np.array([0, 0, height * 0.48, height * 0.48]), np.full(4, z))
            for dx in (-0.1 - phase, 0.1 + phase)]
    c.fill(legs, pants, PERSON)
    torso = c.project(np.array([x - 0.22, x + 0.22, x + 0.2, x - 0.2]), np.array([height * 0.46, height * 0.46, height * 0.83, height * 0.83]), np.full(4, z))
    arms = [c.project(np.array([x + dx - 0.05, x + dx + 0.05, x + dx + 0.05, x + dx - 0.05]), np.array([height * 0.45, height * 0.45, height * 0.82, height * 0.82]), np.full(4, z))
            for dx in (-0.27, 0.27)]
    c.fill([torso] + arms, shirt, PERSON)
    u, v = c.xy(x, height * 0.91, z)
    rad = c.radius(0.11, z)
    if rad >= 0.5:
        ctr = (int(u * c.scale), int(v * c.scale))
        cv2.circle(c.img, ctr, int(rad * c.scale), skin, -1, cv2.LINE_8, c.shift)
        cv2.circle(c.lab, ctr, int(rad * c.scale), PERSON, -1, cv2.LINE_8, c.shift)


@functools.lru_cache(maxsize=1)
def _noise_tile() -> np.ndarray:
    """A fixed bank of unit Gaussian noise; scenes take random windows of it (10x cheaper than fresh noise)."""
    return np.random.default_rng(12345).standard_normal((_TILE_H, _TILE_W), dtype=np.float32)


_TILE_H, _TILE_W = 1088, 2112


def _noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    if h > _TILE_H - 64 or w > _TILE_W - 64:
        return rng.standard_normal((h, w), dtype=np.float32)
    y, x = int(rng.integers(0, _TILE_H - h + 1)), int(rng.integers(0, _TILE_W - w + 1))
    n = _noise_tile()[y : y + h, x : x + w]
    return n[::-1] if rng.random() < 0.5 else n


@functools.lru_cache(maxsize=8)
def _vignette(h: int, w: int) -> np.ndarray:
    yy, xx = np.ogrid[:h, :w]
    return (1.0 - 0.175 * (((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2)).astype(np.float32)


def _finish(c: _Canvas, wd: World, rng: np.random.Generator, tex_rng: np.random.Generator) -> np.ndarray:
    """Lighting, texture (from ``tex_rng``, fixed along a video) and sensor noise (from ``rng``)."""
    h, w = c.h, c.w
    lab = c.lab
    # coarse shading blotches + fine grain, amplitude chosen per class and per scene
    coarse = cv2.resize(tex_rng.standard_normal((max(2, h // 16), max(2, w // 16))).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    tex = coarse * wd.shade[lab]
    tex += _noise(tex_rng, h, w) * wd.texture[lab]
    # global exposure and vignetting (a multiplicative light map), cast shadows darken every class
    light = _vignette(h, w) * np.float32(wd.gain)
    if wd.shadows:
        mask = np.zeros((h, w), np.uint8)
        for x0, x1, z0, z1 in wd.shadows:
            cv2.fillPoly(mask, [c.ground_quad(x0, x1, z0, z1)], 1, cv2.LINE_8, c.shift)
        light = light * np.where(mask > 0, np.float32(0.55), np.float32(1.0))
    out = np.empty((h, w, 3), np.uint8)
    for ch in range(3):
        # white balance per channel and sensor noise per channel
        v = c.img[..., ch].astype(np.float32)
        v += tex
        v *= light * np.float32(wd.cast[ch])
        v += _noise(rng, h, w) * np.float32(wd.noise)
        np.clip(v, 0, 255, out=v)
        out[..., ch] = v
    if wd.blur:
        out = cv2.GaussianBlur(out, (3, 3), 0)
    return out


def _render(wd: World, h: int, w: int, cam_z: float = 0.0, yaw: float | None = None, t: float = 0.0, noise_seed: int = 0, texture_seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(noise_seed)
    tex_rng = rng if texture_seed is None else np.random.default_rng(texture_seed)
    c = _Canvas(wd, h, w, cam_z, wd.yaw if yaw is None else yaw)
    _draw_sky_and_far(c, wd, rng)
    _draw_ground(c, wd)
    for b in sorted(wd.buildings, key=lambda b: -b[2]):
        if b[2] > cam_z + Z_NEAR and b[1] < cam_z + Z_FAR:
            _draw_building(c, b, rng)
    objs = [o for o in wd.objects if cam_z + 1.0 < o.z + o.vz * t < cam_z + Z_FAR]
    for o in sorted(objs, key=lambda o: -(o.z + o.vz * t)):
        _draw_object(c, o, t)
    return _finish(c, wd, rng, tex_rng), c.lab


def render_scene(seed: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Render one street scene: ``(rgb uint8 HxWx3, label uint8 HxW)``; the same seed gives the same scene."""
    if h < 8 or w < 8:
        raise ValueError(f"scene size {h}x{w} is too small (need at least 8x8)")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFFFFFF, 0x5EED])
    world = make_world(rng, seed=int(seed) & 0x7FFFFFFF)
    return _render(world, h, w, noise_seed=int(rng.integers(0, 2**62)))


def video_frames(n: int, h: int, w: int, seed: int = 0, fps: float = 15.0, speed: float = 8.0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``n`` temporally coherent frames ``(rgb uint8 HxWx3, label uint8 HxW)`` of one street.

    The camera drives forward at ``speed`` m/s and pans slowly left and right; cars and pedestrians
    move with their own velocities. Sensor noise changes per frame, the world does not.
    """
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFFFFFF, 0x71DE0])
    duration = n / fps
    world = make_world(rng, extent=Z_FAR + speed * duration, seed=int(seed) & 0x7FFFFFFF)
    for i in range(n):
        t = i / fps
        yaw = world.yaw + 0.06 * math.sin(2 * math.pi * t / 12.0)
        yield _render(world, h, w, cam_z=speed * t, yaw=yaw, t=t, noise_seed=int(seed) * 1_000_003 + i, texture_seed=int(seed) & 0x7FFFFFFF)


# --------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------

DEFAULT_LENGTHS = {"train": 2000, "val": 200}
_SPLIT_BIT = {"train": 0, "val": 1}


def scene_seed(seed: int, split: str, idx: int) -> int:
    """The scene seed of item ``idx`` of a split: train seeds are even, val seeds odd, so the splits
    can never share a scene; distinct (seed, idx) pairs never collide for idx < 10**7."""
    if split not in _SPLIT_BIT:
        raise ValueError(f"unknown split {split!r}")
    if not 0 <= idx < 10_000_000:
        raise IndexError(idx)
    return (int(seed) * 10_000_000 + int(idx)) * 2 + _SPLIT_BIT[split]


def synthetic_info() -> DatasetInfo:
    return DatasetInfo(
        name="synthetic",
        num_classes=NUM_CLASSES,
        class_names=list(CLASS_NAMES),
        palette=[list(c) for c in PALETTE],
        extra={"generator": "rtseg.data.synthetic.render_scene"},
    )


class SyntheticDataset(PairDataset):
    """Scenes rendered on the fly at ``input_hw`` (nothing is cached to disk), deterministic per
    (seed, split, index); ``length`` items per split (default train 2000, val 200)."""

    def __init__(self, split: str, input_hw: tuple[int, int], augment: bool, seed: int = 0, length: int | None = None, native_labels: bool = False) -> None:
        super().__init__(synthetic_info(), input_hw, augment, native_labels)
        if split not in _SPLIT_BIT:
            raise RtsegError(f"the synthetic dataset has splits train and val, not {split!r}")
        self.split = split
        self.seed = int(seed)
        self.length = int(length if length is not None else DEFAULT_LENGTHS[split])
        if self.length < 1:
            raise RtsegError(f"synthetic dataset length must be at least 1, got {self.length}")

    def __len__(self) -> int:
        return self.length

    def load(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.input_hw
        return render_scene(scene_seed(self.seed, self.split, idx), h, w)
