"""The synthetic world: seeded road scenes with work zones, lookalikes and ground truth.

Layers: `camera` (projection), `shapes` (how each object is drawn), `scenario` (what is in
a video and where), `render` (pixels for one frame), `video_io` (H.264 files),
`segmentation` (authentic and copy-move forged images), `world` (the `quarry synth` job).
"""
