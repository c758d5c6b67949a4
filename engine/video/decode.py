"""Decode frames of a video: `probe_video` for its size, `decode_frames` for batches of frames.

decord is the default backend; PyAV is the alternative (same outputs: RGB uint8 frames,
resized at decode time when a size is given). Any failure is a `VideoDecodeError` naming
the file and the reason, so the mining job can put it in its errors table.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

# OpenCV must be loaded before decord: decord's bundled zlib otherwise breaks cv2's PNG codec.
import cv2
import numpy as np

BACKENDS = ("decord", "pyav")


class VideoDecodeError(RuntimeError):
    """A video could not be opened or decoded."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


@dataclass(frozen=True)
class VideoInfo:
    n_frames: int
    fps: float
    width: int
    height: int


# decord's messages carry its C++ source (`[18:41:50] /github/workspace/src/video/video_reader.cc:83: `)
_CPP_SOURCE = re.compile(r"(\[\d\d:\d\d:\d\d\] )?\S+\.(cc|cpp|h):\d+: (Check failed: )?")


def decoder_message(exc: Exception) -> str:
    """A decoder's exception in the user's words: no C++ source paths, no FFmpeg internals."""
    text = str(exc).strip()
    if "avcodec_send_packet" in text or "Error sending packet" in text:
        return "corrupt video data: the decoder rejected a packet"
    if text.startswith("Error reading") or "ERROR opening" in text:
        return "not a video FFmpeg can read, or cut short"
    first = text.splitlines()[0] if text else type(exc).__name__
    return _CPP_SOURCE.sub("", first)[:200]


def _check_file(path: str) -> None:
    p = Path(path)
    if p.is_symlink() and not p.exists():
        raise VideoDecodeError(path, f"a link to a missing file ({os.readlink(p)})")
    if not p.exists():
        raise VideoDecodeError(path, "file not found")
    if p.is_dir():
        raise VideoDecodeError(path, "is a directory, not a video")
    if p.stat().st_size == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)")


def _decord_reader(path: str, size: tuple[int, int] | None):
    import decord

    decord.logging.set_level(decord.logging.QUIET)  # FFmpeg's per-packet complaints; the error row says what failed
    width, height = size if size else (-1, -1)
    try:
        return decord.VideoReader(path, ctx=decord.cpu(0), width=width, height=height, num_threads=1)
    except Exception as exc:  # decord raises DECORDError / RuntimeError with FFmpeg's text
        raise VideoDecodeError(path, f"cannot open as video ({decoder_message(exc)})") from None


def probe_video(path: str, backend: str = "decord") -> VideoInfo:
    """Frame count, frame rate and size of the video at `path`."""
    _check_file(path)
    if backend == "pyav":
        import av

        try:
            with av.open(path) as container:
                stream = container.streams.video[0]
                n = stream.frames or sum(1 for _ in container.decode(stream))
                return VideoInfo(n, float(stream.average_rate or 0), stream.codec_context.width, stream.codec_context.height)
        except (av.error.FFmpegError, IndexError) as exc:
            raise VideoDecodeError(path, f"cannot open as video ({exc})") from None
    reader = _decord_reader(path, None)
    if len(reader) == 0:
        raise VideoDecodeError(path, "no frames")
    try:
        height, width = reader[0].shape[:2]
    except Exception as exc:
        raise VideoDecodeError(path, f"decode failed at frame 0 ({decoder_message(exc)})") from None
    return VideoInfo(len(reader), float(reader.get_avg_fps()), int(width), int(height))


def _decode_pyav(path: str, frames: Sequence[int], size) -> Iterator[tuple[int, np.ndarray]]:
    import av

    wanted = set(frames)
    last = max(frames)
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for index, frame in enumerate(container.decode(stream)):
                if index > last:
                    break
                if index in wanted:
                    rgb = frame.to_ndarray(format="rgb24")
                    yield index, cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) if size else rgb
    except av.error.FFmpegError as exc:
        raise VideoDecodeError(path, f"decode failed ({exc})") from None


def decode_frames(path: str, frames: Sequence[int], size: tuple[int, int] | None = None,
                  batch_frames: int = 32, backend: str = "decord") -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (frame indices (b,), RGB frames (b, H, W, 3)) for the requested frame indices,
    ascending, in batches of at most `batch_frames`. `size` is (width, height) at decode time.

    decord seeks to the nearest key frame for strided or ranged requests, so frames that are
    not asked for are skipped where the container allows it.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown decoder backend {backend!r}; expected one of {BACKENDS}")
    frames = sorted(int(f) for f in frames)
    if not frames:
        return
    _check_file(path)
    if backend == "pyav":
        pending_idx, pending = [], []
        for index, rgb in _decode_pyav(path, frames, size):
            pending_idx.append(index)
            pending.append(rgb)
            if len(pending) == batch_frames:
                yield np.array(pending_idx), np.stack(pending)
                pending_idx, pending = [], []
        if pending:
            yield np.array(pending_idx), np.stack(pending)
        return
    reader = _decord_reader(path, size)
    n = len(reader)
    frames = [f for f in frames if f < n]
    for start in range(0, len(frames), batch_frames):
        chunk = frames[start : start + batch_frames]
        try:
            batch = reader.get_batch(chunk).asnumpy()
        except Exception as exc:
            raise VideoDecodeError(path, f"decode failed at frames {chunk[0]}-{chunk[-1]} ({decoder_message(exc)})") from None
        yield np.array(chunk), batch
