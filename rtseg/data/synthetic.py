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

Everything is vectorised numpy + OpenCV drawing: a 256x512 scene renders in a few milliseconds.
The camera model is resolution-independent (focal length and horizon are fractions of the image
size), so a scene can be rendered at any resolution.

Classes (Cityscapes colours)::

    0 road  1 sidewalk  2 building  3 pole  4 traffic sign  5 vegetation  6 terrain  7 sky
    8 person  9 vehicle
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Iterator

import cv2
import numpy as np

from rtseg.data.base import DatasetInfo, PairDataset
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

_Z_NEAR = 0.4  # metres: geometry closer than this to the camera is clipped
_Z_FAR = 220.0


@dataclass
class _Obj:
    """A world object: kind, lateral position X (m), depth Z (m), size and appearance."""

    kind: str
    x: float
    z: float
    size: tuple[float, ...]
    colors: tuple[tuple[int, int, int], ...]
    vx: float = 0.0  # m/s, for video
    vz: float = 0.0
    extra: dict = field(default_factory=dict)


#: a facade: (x, z start, z end, height, facade colour, window colour, side -1 | 1)
_Building = tuple[float, float, float, float, tuple[int, int, int], tuple[int, int, int], int]


@dataclass
class _World:
    cam_h: float
    fx: float  # focal length as a fraction of image width
    hy: float  # horizon row as a fraction of image height
    yaw: float  # vanishing-point shift as a fraction of image width
    road: tuple[float, float]  # left and right road edge X
    sidewalk: tuple[float, float]  # widths left/right
    terrain: tuple[float, float]  # grass strip widths left/right (0: none)
    buildings: list[_Building]
    objects: list[_Obj]
    lanes: list[float]
    crosswalks: list[float]
    sky: tuple[tuple[int, int, int], tuple[int, int, int]]
    road_col: tuple[int, int, int]
    walk_col: tuple[int, int, int]
    curb_col: tuple[int, int, int]
    grass_col: tuple[int, int, int]
    far: str  # "skyline" | "trees"
    far_col: tuple[int, int, int]
    gain: float
    cast: tuple[float, float, float]
    noise: float
    blur: bool
    texture: np.ndarray  # per-class amplitude of fine texture noise
    shade: np.ndarray  # per-class amplitude of coarse shading noise
    shadows: list[tuple[float, float, float, float]]  # ground-plane shadow boxes (x0, x1, z0, z1)
    seed: int


def _col(rng: np.random.Generator, base: tuple[int, int, int], spread: int) -> tuple[int, int, int]:
    d = rng.integers(-spread, spread + 1, 3).tolist()
    return (min(255, max(0, base[0] + d[0])), min(255, max(0, base[1] + d[1])), min(255, max(0, base[2] + d[2])))


def _grey(rng: np.random.Generator, lo: int, hi: int, tint: int = 8) -> tuple[int, int, int]:
    g = int(rng.integers(lo, hi + 1))
    return _col(rng, (g, g, g), tint)


_VIVID = ((200, 30, 30), (30, 60, 170), (230, 200, 40), (240, 240, 240), (20, 20, 20), (40, 120, 60), (150, 150, 155))


def _make_world(rng: np.random.Generator, extent: float = _Z_FAR, seed: int = 0) -> _World:
    """Sample a street: layout first, then objects placed on it, then appearance and lighting.
    (The draws happen in this order, so a seed always gives the same street.)"""
    r = rng
    lanes_l, lanes_r = int(r.integers(1, 3)), int(r.integers(1, 3))
    lane_w = float(r.uniform(2.8, 3.6))
    offset = float(r.uniform(-0.8, 0.8)) * lane_w
    road = (-lanes_l * lane_w + offset, lanes_r * lane_w + offset)
    lanes = [road[0] + i * lane_w for i in range(1, lanes_l + lanes_r)]
    sidewalk = (float(r.uniform(1.5, 4.5)), float(r.uniform(1.5, 4.5)))
    terrain = tuple(float(r.uniform(2.0, 8.0)) if r.random() < 0.35 else 0.0 for _ in range(2))
    top, bottom = _sample_sky(r)
    road_col = _grey(r, 60, 140, 10)
    walk_col = _col(r, _grey(r, 110, 190, 0), 18)
    curb_col = _grey(r, 120, 210, 6)
    grass_col = _col(r, (90, 140, 60), 30) if r.random() < 0.7 else _col(r, (150, 140, 80), 25)

    xl = road[0] - sidewalk[0] - terrain[0]
    xr = road[1] + sidewalk[1] + terrain[1]
    buildings = _place_buildings(r, xl, xr, terrain, bottom, extent)  # type: ignore[arg-type]
    objects = _place_greenery(r, road, sidewalk, terrain, extent)  # type: ignore[arg-type]
    objects += _place_poles(r, road, extent)
    objects += _place_cars(r, road, lane_w, lanes_l + lanes_r, extent)
    objects += _place_people(r, road, sidewalk, extent)
    shadows = []
    for _ in range(int(r.integers(0, 4))):
        x0 = float(r.uniform(road[0] - 3, road[1]))
        z0 = float(r.uniform(2, 60))
        shadows.append((x0, x0 + float(r.uniform(2, 12)), z0, z0 + float(r.uniform(3, 25))))
    # per-class texture strength (fine grain) and shading (coarse blotches), varied per scene
    texture = np.array([r.uniform(4, 14), r.uniform(3, 12), r.uniform(2, 10), r.uniform(1, 5), r.uniform(0, 3),
                        r.uniform(14, 30), r.uniform(8, 20), r.uniform(0, 2), r.uniform(2, 8), r.uniform(1, 6)], np.float32)
    shade = np.array([r.uniform(5, 20), r.uniform(4, 16), r.uniform(6, 22), r.uniform(0, 6), r.uniform(0, 4),
                      r.uniform(10, 30), r.uniform(8, 24), r.uniform(4, 16), r.uniform(0, 8), r.uniform(0, 10)], np.float32)
    return _World(
        cam_h=float(r.uniform(1.3, 1.8)), fx=float(r.uniform(0.55, 0.95)), hy=float(r.uniform(0.33, 0.52)),
        yaw=float(r.uniform(-0.12, 0.12)), road=road, sidewalk=sidewalk, terrain=terrain,  # type: ignore[arg-type]
        buildings=buildings, objects=objects, lanes=lanes,
        crosswalks=[float(r.uniform(8, 40))] if r.random() < 0.3 else [],
        sky=(top, bottom), road_col=road_col, walk_col=walk_col, curb_col=curb_col, grass_col=grass_col,
        far="skyline" if r.random() < 0.6 else "trees", far_col=_grey(r, 90, 170, 10),
        gain=float(r.uniform(0.55, 1.3)), cast=tuple(float(v) for v in r.uniform(0.85, 1.15, 3)),  # type: ignore[arg-type]
        noise=float(r.uniform(1.0, 8.0)), blur=bool(r.random() < 0.3), texture=texture, shade=shade,
        shadows=shadows, seed=seed,
    )


def _sample_sky(r: np.random.Generator) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """The sky's top and bottom colours: overcast skies are grey like the road and the facades; clear ones blue; dusk orange."""
    kind = r.choice(3, p=[0.45, 0.4, 0.15])
    if kind == 0:
        return _col(r, (70, 130, 210), 25), _col(r, (180, 210, 235), 20)
    if kind == 1:
        g = int(r.integers(150, 225))
        return _grey(r, g - 30, g), _grey(r, g, min(250, g + 25))
    return _col(r, (90, 100, 160), 25), _col(r, (240, 170, 110), 25)


def _place_buildings(r: np.random.Generator, xl: float, xr: float, terrain: tuple[float, float], sky_bottom: tuple[int, int, int],
                     extent: float) -> list[_Building]:
    """Rows of facades on both sides at ``xl`` / ``xr``, with gaps; a side with terrain may be an open field."""
    buildings = []
    for side, xb in ((-1, xl), (1, xr)):
        if terrain[(side + 1) // 2] > 0 and r.random() < 0.5:
            continue  # open field with trees on this side
        z = float(r.uniform(-extent * 0.1, 5.0))
        while z < extent:
            length = float(r.uniform(8.0, 35.0))
            if r.random() < 0.15:  # a gap between buildings
                z += float(r.uniform(4.0, 12.0))
                continue
            height = float(r.uniform(5.0, 30.0))
            setback = float(r.uniform(0.0, 3.0)) * side
            facade = _grey(r, 60, 200, 12) if r.random() < 0.6 else _col(r, (150, 90, 60), 35)
            win = (_col(r, sky_bottom, 20) if r.random() < 0.4 else _grey(r, 20, 80, 15))
            buildings.append((xb + setback, z, z + length, height, facade, win, side))
            z += length
    return buildings


def _place_greenery(r: np.random.Generator, road: tuple[float, float], sidewalk: tuple[float, float], terrain: tuple[float, float],
                    extent: float) -> list[_Obj]:
    """Trees on the outer sidewalk edge or on grass, and now and then a hedge along the facades."""
    objects: list[_Obj] = []
    for side in (-1, 1):
        i = (side + 1) // 2
        x_edge = road[i] + side * sidewalk[i]
        n = int(r.integers(0, 10)) + (8 if terrain[i] > 0 else 0)
        for _ in range(n):
            x = x_edge + side * float(r.uniform(-0.6, 0.3 + terrain[i]))
            crown = float(r.uniform(1.2, 3.2))
            objects.append(_Obj("tree", x, float(r.uniform(2.0, extent)), (float(r.uniform(1.8, 3.5)), crown, float(r.uniform(0.15, 0.35))),
                                (_col(r, (60, 110, 45), 30), _col(r, (80, 60, 45), 20))))
        if r.random() < 0.3:  # hedge along the facades
            z0 = float(r.uniform(0, 30))
            objects.append(_Obj("hedge", x_edge + side * 0.5, z0, (float(r.uniform(8, 30)), float(r.uniform(0.7, 1.5)), 0.8 * side),
                                (_col(r, (60, 100, 40), 25),)))
    return objects


def _place_poles(r: np.random.Generator, road: tuple[float, float], extent: float) -> list[_Obj]:
    """Poles (street lights / sign posts) along the curbs, some carrying signs."""
    objects: list[_Obj] = []
    for side in (-1, 1):
        x = road[(side + 1) // 2] + side * float(r.uniform(0.3, 0.8))
        z = float(r.uniform(3.0, 20.0))
        while z < extent * 0.6:
            sign = None
            if r.random() < 0.6:
                shape = int(r.integers(0, 3))
                sign = (shape, float(r.uniform(0.5, 0.9)), _VIVID[int(r.integers(0, len(_VIVID)))], _VIVID[int(r.integers(0, len(_VIVID)))])
            objects.append(_Obj("pole", x, z, (float(r.uniform(3.0, 8.0)), float(r.uniform(0.08, 0.16))), (_grey(r, 50, 170, 10),), extra={"sign": sign}))
            z += float(r.uniform(12.0, 40.0))
    return objects


def _place_cars(r: np.random.Generator, road: tuple[float, float], lane_w: float, n_lanes: int, extent: float) -> list[_Obj]:
    """Cars on the lanes (rear view), some parked by the curb."""
    objects: list[_Obj] = []
    for _ in range(int(r.integers(1, 9))):
        lane = int(r.integers(0, n_lanes))
        x = road[0] + (lane + 0.5) * lane_w + float(r.uniform(-0.4, 0.4))
        if r.random() < 0.25:
            x = road[int(r.random() < 0.5)] + (1.1 if x < 0 else -1.1)
            v = 0.0
        else:
            v = float(r.uniform(-3.0, 4.0))
        body = _VIVID[int(r.integers(0, len(_VIVID)))] if r.random() < 0.6 else _grey(r, 40, 220, 15)
        objects.append(_Obj("car", x, float(r.uniform(3.5, extent * 0.5)), (float(r.uniform(1.6, 2.1)), float(r.uniform(1.3, 2.2))),
                            (_col(r, body, 20), _grey(r, 10, 60, 8), _col(r, (200, 20, 20), 30)), vz=v))
    return objects


def _place_people(r: np.random.Generator, road: tuple[float, float], sidewalk: tuple[float, float], extent: float) -> list[_Obj]:
    """Pedestrians on the sidewalks, a few crossing the road."""
    objects: list[_Obj] = []
    for _ in range(int(r.integers(0, 12))):
        side = -1 if r.random() < 0.5 else 1
        i = (side + 1) // 2
        crossing = r.random() < 0.15
        x = float(r.uniform(road[0], road[1])) if crossing else road[i] + side * float(r.uniform(0.4, sidewalk[i] - 0.2))
        skin = _col(r, ((230, 190, 160), (160, 110, 80), (90, 60, 45))[int(r.integers(0, 3))], 12)
        shirt = _VIVID[int(r.integers(0, len(_VIVID)))] if r.random() < 0.5 else _grey(r, 30, 220, 20)
        objects.append(_Obj("person", x, float(r.uniform(2.5, extent * 0.35)), (float(r.uniform(1.5, 1.95)),),
                            (skin, _col(r, shirt, 15), _grey(r, 20, 120, 25)),
                            vx=(float(r.uniform(-1.4, 1.4)) if crossing else 0.0), vz=(0.0 if crossing else float(r.uniform(-1.4, 1.4)))))
    return objects


class _Canvas:
    """Draws world-space quads on the image and the label map with the same rasterisation."""

    def __init__(self, world: _World, h: int, w: int, cam_z: float, yaw: float) -> None:
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
        zc = np.maximum(np.subtract(z, self.cam_z, dtype=np.float64), _Z_NEAR)
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
        z0 = max(z0, self.cam_z + _Z_NEAR)
        return self.project(np.array([x0, x1, x1, x0]), np.full(4, y), np.array([z0, z0, z1, z1]))

    def radius(self, r: float, z: float) -> float:
        return self.f * r / max(z - self.cam_z, _Z_NEAR)

    def xy(self, x: float, y: float, z: float) -> tuple[float, float]:
        zc = max(z - self.cam_z, _Z_NEAR)
        return self.cx + self.f * x / zc, self.cy + self.f * (self.cam_h - y) / zc


def _draw_sky_and_far(c: _Canvas, wd: _World, rng: np.random.Generator) -> None:
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


def _draw_ground(c: _Canvas, wd: _World) -> None:
    zf = c.cam_z + _Z_FAR * 4
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
    z0 = max(z0, c.cam_z + _Z_NEAR)
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


def _draw_object(c: _Canvas, o: _Obj, t: float) -> None:
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


def _draw_tree(c: _Canvas, o: _Obj, x: float, z: float) -> None:
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


def _draw_hedge(c: _Canvas, o: _Obj, x: float, z: float) -> None:
    """A hedge's front and top faces."""
    length, height, depth = o.size
    zz = max(z, c.cam_z + _Z_NEAR)
    front = c.project(np.full(4, x), np.array([0, 0, height, height]), np.array([zz, z + length, z + length, zz]))
    top = c.project(np.array([x, x, x + depth, x + depth]), np.full(4, height), np.array([zz, z + length, z + length, zz]))
    c.fill([front, top], o.colors[0], VEGETATION)


def _draw_pole(c: _Canvas, o: _Obj, x: float, z: float) -> None:
    """A pole and the sign it may carry."""
    height, r = o.size
    quad = c.project(np.array([x - r, x + r, x + r, x - r]), np.array([0, 0, height, height]), np.full(4, z))
    c.fill([quad], o.colors[0], POLE)
    _draw_sign(c, o.extra.get("sign"), x, z, height)


def _draw_car(c: _Canvas, o: _Obj, x: float, z: float) -> None:
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


def _draw_person(c: _Canvas, o: _Obj, x: float, z: float, t: float) -> None:
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


def _finish(c: _Canvas, wd: _World, rng: np.random.Generator, tex_rng: np.random.Generator) -> np.ndarray:
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


def _render(wd: _World, h: int, w: int, cam_z: float = 0.0, yaw: float | None = None, t: float = 0.0, noise_seed: int = 0, texture_seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(noise_seed)
    tex_rng = rng if texture_seed is None else np.random.default_rng(texture_seed)
    c = _Canvas(wd, h, w, cam_z, wd.yaw if yaw is None else yaw)
    _draw_sky_and_far(c, wd, rng)
    _draw_ground(c, wd)
    for b in sorted(wd.buildings, key=lambda b: -b[2]):
        if b[2] > cam_z + _Z_NEAR and b[1] < cam_z + _Z_FAR:
            _draw_building(c, b, rng)
    objs = [o for o in wd.objects if cam_z + 1.0 < o.z + o.vz * t < cam_z + _Z_FAR]
    for o in sorted(objs, key=lambda o: -(o.z + o.vz * t)):
        _draw_object(c, o, t)
    return _finish(c, wd, rng, tex_rng), c.lab


def render_scene(seed: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Render one street scene: ``(rgb uint8 HxWx3, label uint8 HxW)``; the same seed gives the same scene."""
    if h < 8 or w < 8:
        raise ValueError(f"scene size {h}x{w} is too small (need at least 8x8)")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFFFFFF, 0x5EED])
    world = _make_world(rng, seed=int(seed) & 0x7FFFFFFF)
    return _render(world, h, w, noise_seed=int(rng.integers(0, 2**62)))


def video_frames(n: int, h: int, w: int, seed: int = 0, fps: float = 15.0, speed: float = 8.0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``n`` temporally coherent frames ``(rgb uint8 HxWx3, label uint8 HxW)`` of one street.

    The camera drives forward at ``speed`` m/s and pans slowly left and right; cars and pedestrians
    move with their own velocities. Sensor noise changes per frame, the world does not.
    """
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFFFFFF, 0x71DE0])
    duration = n / fps
    world = _make_world(rng, extent=_Z_FAR + speed * duration, seed=int(seed) & 0x7FFFFFFF)
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
