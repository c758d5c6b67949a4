"""What is in one synthetic video and where: objects in world metres, the camera's motion,
the work zone (if any), weather and time of day. Pure and seeded: a scenario is a
function of its random generator, and a frame's contents a function of the scenario.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.synth.shapes import LOOKALIKE_KINDS, SIZES_M

VIDEO_KINDS = ("workzone", "lookalike", "clean")
VIDEO_LABELS = {"workzone": "tp", "lookalike": "fp", "clean": "clean"}
ZONE_STATES = ("OUT", "APPROACHING", "INSIDE", "EXITING")
WEATHERS = ("clear", "overcast", "rain", "fog")
DAYTIMES = ("day", "dusk", "night")
SCENES = ("highway", "urban", "rural")
REGIONS = ("north", "south", "east", "west")

APPROACH_M = 35.0  # a zone is APPROACHING when its start is this close ahead
EXIT_M = 10.0  # the last metres of a zone are EXITING ...
EXIT_TAIL_M = 5.0  # ... and so are the first metres after it
NEAR_M, FAR_M = 2.5, 48.0  # visible depth range
MIN_VISIBLE_PX = 6  # objects shorter than this on screen are not drawn (too far to label)


@dataclass(frozen=True)
class SceneObject:
    """An object at lateral `x_m`, world position `z_m` along the road, moving at `speed_mps`."""

    kind: str
    x_m: float
    z_m: float
    tone: float = 1.0
    speed_mps: float = 0.0
    color: tuple[int, int, int] | None = None  # cars only
    screen_box: tuple[float, float, float, float] | None = None  # screen-space objects (glare)


@dataclass(frozen=True)
class Scenario:
    """Everything needed to render a video deterministically."""

    kind: str
    lookalike_kind: str | None
    speed_mps: float
    weather: str
    daytime: str
    scene: str
    region: str
    zone_m: tuple[float, float] | None  # (start, end) world positions of the work zone
    objects: tuple[SceneObject, ...] = field(default_factory=tuple)
    noise_seed: int = 0

    def camera_m(self, t_s: float) -> float:
        return self.speed_mps * t_s


def rng_for(seed: int, part: int, index: int) -> np.random.Generator:
    """An independent generator per item (video, image), so items can be made in any order."""
    return np.random.default_rng(np.random.SeedSequence([seed, part, index]))


def zone_state(zone_m: tuple[float, float] | None, camera_m: float) -> str:
    """Ground-truth zone state of the camera at `camera_m` relative to the zone [start, end)."""
    if zone_m is None:
        return "OUT"
    start, end = zone_m
    if start - APPROACH_M <= camera_m < start:
        return "APPROACHING"
    if start <= camera_m < end - EXIT_M:
        return "INSIDE"
    if end - EXIT_M <= camera_m < end + EXIT_TAIL_M:
        return "EXITING"
    return "OUT"


def _scenery(rng: np.random.Generator, scene: str, length_m: float, speed_mps: float) -> list[SceneObject]:
    """Trees, poles and ordinary cars: things the detector must learn to ignore."""
    objects: list[SceneObject] = []
    spacing = {"highway": 14.0, "urban": 9.0, "rural": 7.0}[scene]
    z = rng.uniform(3, spacing)
    while z < length_m:
        kind = "pole" if scene == "urban" or rng.random() < 0.3 else "tree"
        side = rng.choice([-1.0, 1.0])
        objects.append(SceneObject(kind, side * rng.uniform(6.5, 11.0), z, tone=rng.uniform(0.8, 1.1)))
        z += rng.uniform(0.6, 1.4) * spacing
    car_colors = [(70, 90, 140), (150, 150, 155), (200, 30, 30), (235, 235, 235), (25, 25, 28), (40, 110, 70)]
    for _ in range(rng.integers(0, 3)):
        color = car_colors[rng.integers(len(car_colors))]
        lane_x = rng.choice([-3.5, 0.0])
        objects.append(SceneObject("car", lane_x, rng.uniform(12, 40), speed_mps=speed_mps * rng.uniform(0.9, 1.05), color=color))
    return objects


def _workzone_objects(rng: np.random.Generator, start: float, end: float) -> list[SceneObject]:
    objects = [SceneObject("sign", rng.uniform(3.8, 4.6), start - rng.uniform(12, 20), tone=rng.uniform(0.85, 1.1))]
    z = start
    while z < end:  # a channelising line of cones and barrels along the right lane edge
        kind = "barrel" if rng.random() < 0.3 else "cone"
        objects.append(SceneObject(kind, rng.uniform(1.9, 2.3), z, tone=rng.uniform(0.85, 1.1)))
        z += rng.uniform(3.0, 5.0)
    for _ in range(rng.integers(1, 4)):  # barriers on the shoulder inside the zone
        objects.append(SceneObject("barrier", rng.uniform(3.4, 4.4), rng.uniform(start, end), tone=rng.uniform(0.85, 1.1)))
    if rng.random() < 0.5:
        objects.append(SceneObject("sign", rng.uniform(3.8, 4.6), rng.uniform(start, end), tone=rng.uniform(0.85, 1.1)))
    return objects


def _lookalike_objects(rng: np.random.Generator, kind: str, length_m: float, speed_mps: float) -> list[SceneObject]:
    tone = lambda: rng.uniform(0.85, 1.1)  # noqa: E731
    if kind == "orange_truck":  # a truck ahead in our lane or the next, moving with traffic
        return [
            SceneObject("orange_truck", rng.choice([-3.5, 0.0]), rng.uniform(14, 26), tone=tone(), speed_mps=speed_mps * rng.uniform(0.85, 1.0))
        ]
    if kind == "glare":  # sun glare is fixed on the screen, not in the world
        return []
    objects, z = [], rng.uniform(8, 20)
    while z < length_m:
        if kind == "orange_sign":
            objects.append(SceneObject("orange_sign", rng.uniform(4.0, 5.5), z, tone=tone()))
            z += rng.uniform(15, 25)
        else:  # people in orange vests at the roadside
            objects.append(SceneObject("orange_person", rng.uniform(3.0, 4.5), z, tone=tone()))
            z += rng.uniform(8, 15)
    return objects


def make_scenario(rng: np.random.Generator, kind: str, duration_s: float, lookalike_kind: str | None = None,
                  weathers: tuple[str, ...] = WEATHERS) -> Scenario:
    """Draw a scenario of `kind` (workzone / lookalike / clean) from `rng`."""
    if kind not in VIDEO_KINDS:
        raise ValueError(f"unknown video kind {kind!r}; expected one of {VIDEO_KINDS}")
    speed = float(rng.uniform(8.0, 12.0))
    scene = str(rng.choice(SCENES))
    weather = str(rng.choice(weathers))
    daytime = str(rng.choice(DAYTIMES, p=[0.6, 0.25, 0.15]))
    length_m = speed * duration_s + FAR_M
    objects = _scenery(rng, scene, length_m, speed)
    zone = None
    if kind == "workzone":
        start = float(rng.uniform(0.25, 0.45) * speed * duration_s)
        zone = (start, start + float(rng.uniform(0.4, 0.6) * speed * duration_s))
        objects += _workzone_objects(rng, *zone)
    elif kind == "lookalike":
        lookalike_kind = lookalike_kind or str(rng.choice(LOOKALIKE_KINDS))
        objects += _lookalike_objects(rng, lookalike_kind, length_m, speed)
    if kind == "lookalike" and lookalike_kind == "glare":
        weather = "clear"
    return Scenario(
        kind=kind,
        lookalike_kind=lookalike_kind if kind == "lookalike" else None,
        speed_mps=speed,
        weather=weather,
        daytime=daytime,
        scene=scene,
        region=str(rng.choice(REGIONS)),
        zone_m=zone,
        objects=tuple(objects),
        noise_seed=int(rng.integers(2**31)),
    )


def glare_box(width_px: int, height_px: int, noise_seed: int, t_s: float) -> tuple[float, float, float, float]:
    """Screen-space box of a sun glare, drifting slowly; seeded by the scenario."""
    rng = np.random.default_rng(noise_seed)
    cx = rng.uniform(0.55, 0.85) * width_px + 3.0 * np.sin(t_s)
    cy = rng.uniform(0.28, 0.45) * height_px
    r = rng.uniform(0.06, 0.1) * width_px
    return cx - r, cy - r, cx + r, cy + r


def visible_objects(scenario: Scenario, camera, t_s: float) -> list[tuple[SceneObject, tuple[float, float, float, float], float]]:
    """Objects in view at time `t_s` with their pixel boxes, farthest first (paint order)."""
    cam_z = scenario.camera_m(t_s)
    in_view = []
    for obj in scenario.objects:
        depth = obj.z_m + obj.speed_mps * t_s - cam_z
        if not NEAR_M <= depth <= FAR_M:
            continue
        width_m, height_m = SIZES_M[obj.kind]
        box = camera.project_box(obj.x_m, depth, width_m, height_m)
        if box[3] - box[1] < MIN_VISIBLE_PX or box[2] < 0 or box[0] >= camera.width_px:
            continue  # too small to see, or entirely out of frame
        in_view.append((obj, box, depth))
    in_view.sort(key=lambda item: -item[2])
    if scenario.lookalike_kind == "glare":
        box = glare_box(camera.width_px, camera.height_px, scenario.noise_seed, t_s)
        in_view.append((SceneObject("glare", 0.0, 0.0), box, 0.0))
    return in_view
