"""Write RGB frames as a real H.264 MP4 (PyAV + libx264), atomically.

OpenCV's VideoWriter cannot write H.264 on these machines (only mp4v), so PyAV it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from engine.storage import atomic_path


def write_h264(frames: Iterable[np.ndarray], path: Path, fps: int, crf: int = 23) -> int:
    """Encode RGB uint8 frames (H, W, 3; even H and W) to `path`; return the frame count.

    One encoder thread and fixed settings make the bytes a function of the frames.
    """
    import av

    count = 0
    with atomic_path(Path(path)) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = None
            for frame in frames:
                if stream is None:
                    height, width = frame.shape[:2]
                    stream = container.add_stream("libx264", rate=fps)
                    stream.width, stream.height = width, height
                    stream.pix_fmt = "yuv420p"
                    stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
                    stream.thread_count = 1
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
                count += 1
            if stream is None:
                raise ValueError(f"no frames to write to {path}")
            for packet in stream.encode():
                container.mux(packet)
    return count
