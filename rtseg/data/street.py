"""The street a synthetic scene shows (:mod:`rtseg.data.synthetic` draws it): a layout (road, lanes,
sidewalks, terrain), the objects placed on it (buildings, trees and hedges, poles with signs, cars,
people) and its appearance and lighting, all drawn from one random generator in a fixed order, so a
seed always gives the same street. Coordinates are metres: x across the road, z along it from the camera.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Z_NEAR = 0.4  # metres: geometry closer than this to the camera is clipped
Z_FAR = 220.0


@dataclass
class WorldObject:
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
class World:
    cam_h: float
    fx: float  # focal length as a fraction of image width
    hy: float  # horizon row as a fraction of image height
    yaw: float  # vanishing-point shift as a fraction of image width
    road: tuple[float, float]  # left and right road edge X
    sidewalk: tuple[float, float]  # widths left/right
    terrain: tuple[float, float]  # grass strip widths left/right (0: none)
    buildings: list[_Building]
    objects: list[WorldObject]
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


def make_world(rng: np.random.Generator, extent: float = Z_FAR, seed: int = 0) -> World:
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
    return World(
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
                    extent: float) -> list[WorldObject]:
    """Trees on the outer sidewalk edge or on grass, and now and then a hedge along the facades."""
    objects: list[WorldObject] = []
    for side in (-1, 1):
        i = (side + 1) // 2
        x_edge = road[i] + side * sidewalk[i]
        n = int(r.integers(0, 10)) + (8 if terrain[i] > 0 else 0)
        for _ in range(n):
            x = x_edge + side * float(r.uniform(-0.6, 0.3 + terrain[i]))
            crown = float(r.uniform(1.2, 3.2))
            objects.append(WorldObject("tree", x, float(r.uniform(2.0, extent)), (float(r.uniform(1.8, 3.5)), crown, float(r.uniform(0.15, 0.35))),
                                (_col(r, (60, 110, 45), 30), _col(r, (80, 60, 45), 20))))
        if r.random() < 0.3:  # hedge along the facades
            z0 = float(r.uniform(0, 30))
            objects.append(WorldObject("hedge", x_edge + side * 0.5, z0, (float(r.uniform(8, 30)), float(r.uniform(0.7, 1.5)), 0.8 * side),
                                (_col(r, (60, 100, 40), 25),)))
    return objects


def _place_poles(r: np.random.Generator, road: tuple[float, float], extent: float) -> list[WorldObject]:
    """Poles (street lights / sign posts) along the curbs, some carrying signs."""
    objects: list[WorldObject] = []
    for side in (-1, 1):
        x = road[(side + 1) // 2] + side * float(r.uniform(0.3, 0.8))
        z = float(r.uniform(3.0, 20.0))
        while z < extent * 0.6:
            sign = None
            if r.random() < 0.6:
                shape = int(r.integers(0, 3))
                sign = (shape, float(r.uniform(0.5, 0.9)), _VIVID[int(r.integers(0, len(_VIVID)))], _VIVID[int(r.integers(0, len(_VIVID)))])
            objects.append(WorldObject("pole", x, z, (float(r.uniform(3.0, 8.0)), float(r.uniform(0.08, 0.16))), (_grey(r, 50, 170, 10),), extra={"sign": sign}))
            z += float(r.uniform(12.0, 40.0))
    return objects


def _place_cars(r: np.random.Generator, road: tuple[float, float], lane_w: float, n_lanes: int, extent: float) -> list[WorldObject]:
    """Cars on the lanes (rear view), some parked by the curb."""
    objects: list[WorldObject] = []
    for _ in range(int(r.integers(1, 9))):
        lane = int(r.integers(0, n_lanes))
        x = road[0] + (lane + 0.5) * lane_w + float(r.uniform(-0.4, 0.4))
        if r.random() < 0.25:
            x = road[int(r.random() < 0.5)] + (1.1 if x < 0 else -1.1)
            v = 0.0
        else:
            v = float(r.uniform(-3.0, 4.0))
        body = _VIVID[int(r.integers(0, len(_VIVID)))] if r.random() < 0.6 else _grey(r, 40, 220, 15)
        objects.append(WorldObject("car", x, float(r.uniform(3.5, extent * 0.5)), (float(r.uniform(1.6, 2.1)), float(r.uniform(1.3, 2.2))),
                            (_col(r, body, 20), _grey(r, 10, 60, 8), _col(r, (200, 20, 20), 30)), vz=v))
    return objects


def _place_people(r: np.random.Generator, road: tuple[float, float], sidewalk: tuple[float, float], extent: float) -> list[WorldObject]:
    """Pedestrians on the sidewalks, a few crossing the road."""
    objects: list[WorldObject] = []
    for _ in range(int(r.integers(0, 12))):
        side = -1 if r.random() < 0.5 else 1
        i = (side + 1) // 2
        crossing = r.random() < 0.15
        x = float(r.uniform(road[0], road[1])) if crossing else road[i] + side * float(r.uniform(0.4, sidewalk[i] - 0.2))
        skin = _col(r, ((230, 190, 160), (160, 110, 80), (90, 60, 45))[int(r.integers(0, 3))], 12)
        shirt = _VIVID[int(r.integers(0, len(_VIVID)))] if r.random() < 0.5 else _grey(r, 30, 220, 20)
        objects.append(WorldObject("person", x, float(r.uniform(2.5, extent * 0.35)), (float(r.uniform(1.5, 1.95)),),
                            (skin, _col(r, shirt, 15), _grey(r, 20, 120, 25)),
                            vx=(float(r.uniform(-1.4, 1.4)) if crossing else 0.0), vz=(0.0 if crossing else float(r.uniform(-1.4, 1.4)))))
    return objects
