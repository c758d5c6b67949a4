"""Augmentation presets (albumentations 2.x argument names; old names are silently ignored
with only a warning there, so these are checked by a test that runs each preset).

Detection presets are bbox-aware (boxes in pixel xyxy, `pascal_voc`; boxes pushed mostly out
of the frame are dropped). Seed 004's weather set: rain, fog, shadow, sun flare.

Albumentations keeps its own random state, apart from numpy's and torch's: a pipeline is
seeded here (one seed per Ray Train rank), and each DataLoader worker reseeds its copy from
torch's per-worker seed (`reseed_worker`), else every epoch's workers would start from the
same copied state and repeat the same augmentations.
"""

from __future__ import annotations

PRESETS = ("none", "light", "medium", "heavy", "weather")


def _ops(preset: str, segmentation: bool) -> list:
    import albumentations as A

    if preset not in PRESETS:
        raise ValueError(f"unknown augmentation preset {preset!r}; expected one of {PRESETS}")
    if preset == "none":
        return []
    flips = [A.HorizontalFlip(p=0.5)] + ([A.VerticalFlip(p=0.5), A.RandomRotate90(p=0.5)] if segmentation else [])
    light = flips + [A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5)]
    if preset == "light":
        return light
    medium = light + [
        A.HueSaturationValue(hue_shift_limit=5, sat_shift_limit=20, val_shift_limit=15, p=0.3),
        A.Affine(scale=(0.8, 1.2), translate_percent=(-0.1, 0.1), rotate=(-5, 5), p=0.5),
        A.OneOf([A.GaussNoise(std_range=(0.01, 0.05)), A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=5)], p=0.3),
    ]
    if preset == "medium":
        return medium
    if preset == "heavy":
        return medium + [A.Perspective(scale=(0.02, 0.06), p=0.3),
                         A.CoarseDropout(num_holes_range=(1, 4), hole_height_range=(0.05, 0.15),
                                         hole_width_range=(0.05, 0.15), p=0.3)]
    return light + [A.OneOf([  # weather (seed 004)
        A.RandomRain(slant_range=(-10, 10), drop_length=8, drop_width=1, blur_value=3, brightness_coefficient=0.8),
        A.RandomFog(fog_coef_range=(0.1, 0.3), alpha_coef=0.08),
        A.RandomShadow(shadow_roi=(0, 0.5, 1, 1), num_shadows_limit=(1, 2)),
        A.RandomSunFlare(flare_roi=(0, 0, 1, 0.5), src_radius=40, num_flare_circles_range=(3, 6)),
    ], p=0.5)]


def detection_augment(preset: str, seed: int | None = None):
    """An albumentations pipeline taking image, bboxes (pixel xyxy) and class_labels; None for 'none'."""
    import albumentations as A

    ops = _ops(preset, segmentation=False)
    if not ops:
        return None
    return A.Compose(ops, bbox_params=A.BboxParams(format="pascal_voc", label_fields=["class_labels"],
                                                    min_visibility=0.3, clip=True), seed=seed)


def segmentation_augment(preset: str, seed: int | None = None):
    """An albumentations pipeline taking image and mask (the mask follows every geometric op)."""
    import albumentations as A

    ops = _ops(preset, segmentation=True)
    return A.Compose(ops, seed=seed) if ops else None


def reseed_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: seed the worker's copy of the dataset's pipeline from
    torch's seed for this worker (drawn anew each epoch from the loader's seeded generator)."""
    import torch

    info = torch.utils.data.get_worker_info()
    augment = getattr(info.dataset, "augment", None)
    if augment is not None:
        augment.set_random_seed(info.seed % 2**32)
