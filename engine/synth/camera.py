"""A pinhole camera over a flat road: world metres to image pixels."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Camera:
    """Camera at height `height_m` looking down the road (+z forward, +x right)."""

    width_px: int
    height_px: int
    height_m: float = 1.4
    horizon_frac: float = 0.42  # horizon row as a fraction of image height

    @property
    def focal_px(self) -> float:
        # ~58 degree horizontal field of view, a typical dashcam crop
        return 0.9 * self.width_px

    @property
    def horizon_y(self) -> float:
        return self.horizon_frac * self.height_px

    def ground_point(self, x_m: float, z_m: float) -> tuple[float, float]:
        """Pixel (x, y) of the ground point at lateral `x_m` and distance `z_m`."""
        f = self.focal_px
        return self.width_px / 2 + f * x_m / z_m, self.horizon_y + f * self.height_m / z_m

    def project_box(self, x_m: float, z_m: float, width_m: float, height_m: float):
        """Pixel box (x1, y1, x2, y2) of an upright object standing on the ground at (x_m, z_m)."""
        f = self.focal_px
        cx, ground_y = self.ground_point(x_m, z_m)
        half_w = f * width_m / (2 * z_m)
        return cx - half_w, ground_y - f * height_m / z_m, cx + half_w, ground_y
