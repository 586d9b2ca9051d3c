"""Video files in and out: clips are written with PyAV (H.264 mp4) and read back with decord, or with PyAV
where decord is not installed (it has wheels for x86_64 only).

Frames are ``uint8`` arrays ``[N, H, W, 3]`` (RGB). :func:`read_frames` samples ``N`` frames uniformly
(the centre of each of ``N`` equal segments, as LLaVA-style video-LLMs do) and raises
:class:`~namm_suite.tasks.base.TaskDataError` naming the file and the field for a missing or undecodable
file or a clip with fewer frames than asked for. What decord's C++ code and its ffmpeg print straight to
the stderr file descriptor about a damaged file is silenced unless logging is at INFO (``namm -v``): the
error's one line says what went wrong.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from namm_suite.atomic import write_bytes_atomic

from ..base import TaskDataError

logger = logging.getLogger(__name__)


def encode_video(frames: np.ndarray, fps: int = 8, crf: int = 12) -> bytes:
    """H.264 mp4 bytes of ``frames`` (uint8 ``[N, H, W, 3]``, H and W even; yuv420p, constant quality ``crf``)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [N, H, W, 3], got {frames.dtype} {frames.shape}")
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        # one thread and no B-frames: the same frames always give the same bytes
        stream.options = {"crf": str(crf), "threads": "1", "bf": "0"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return buffer.getvalue()


def write_video(path: Path, frames: np.ndarray, fps: int = 8) -> Path:
    """Write ``frames`` to ``path`` as an H.264 mp4, atomically; returns ``path``."""
    write_bytes_atomic(Path(path), encode_video(frames, fps))
    return Path(path)


def uniform_indices(n_total: int, n_frames: int) -> np.ndarray:
    """Indices of ``n_frames`` frames spread uniformly over ``n_total`` (segment centres; all frames when equal)."""
    return ((np.arange(n_frames) + 0.5) * n_total / n_frames).astype(np.int64)


def frame_count(path: Path) -> int:
    """Number of frames in the video at ``path`` (raises :class:`TaskDataError` when unreadable)."""
    return len(_reader(Path(path)))


def read_frames(path: Path, n_frames: int | None = None) -> np.ndarray:
    """``n_frames`` frames sampled uniformly from the video at ``path`` (all frames when None), uint8
    ``[N, H, W, 3]``.

    Raises:
        TaskDataError: the file is missing or cannot be decoded (field ``video``), or the clip has fewer
            than ``n_frames`` frames (field ``frames``).
    """
    path = Path(path)
    reader = _reader(path)
    total = len(reader)
    if n_frames is None:
        n_frames = total
    if n_frames <= 0:
        raise TaskDataError(f"frame count must be > 0, got {n_frames}", path=path, field="frames")
    if n_frames > total:
        raise TaskDataError(f"asked for {n_frames} frames but the clip has only {total}", path=path,
                            field="frames")
    try:
        with _quiet_native_stderr():
            return reader.get_batch(uniform_indices(total, n_frames).tolist()).asnumpy()
    except Exception as error:  # decord raises its own DECORDError on damaged streams
        raise TaskDataError(f"cannot decode frames ({_reason(error, path)}): the file is damaged", path=path,
                            field="video") from error


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Send file descriptor 2 to the null device for the block, unless logging is at INFO or below."""
    if logger.isEnabledFor(logging.INFO):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _reason(error: Exception, path: Path) -> str:
    """A decoder's message without decord's C++ source locations, check expressions and the file's path."""
    text = re.sub(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ", "", str(error))
    text = re.sub(r"Check failed: .* \(-?\d+ vs\. -?\d+\) ", "", text)
    text = re.sub(r"^Thread worker: ", "", text.replace(str(path), "the file")).strip(" .")
    return text or type(error).__name__


class _PyAVReader:
    """The part of ``decord.VideoReader`` used here, with PyAV: every frame is decoded once, on open (the
    clips of these tasks are short; decord seeks instead)."""

    def __init__(self, path: Path) -> None:
        import av

        with av.open(str(path)) as container:
            self.frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]

    def __len__(self) -> int:
        return len(self.frames)

    def get_batch(self, indices: list[int]) -> _PyAVReader:
        batch = _PyAVReader.__new__(_PyAVReader)
        batch.frames = [self.frames[i] for i in indices]
        return batch

    def asnumpy(self) -> np.ndarray:
        return np.stack(self.frames)


def _reader(path: Path):
    if not path.is_file():
        raise TaskDataError("video file not found", path=path, field="video")
    try:
        import decord
    except ImportError:
        decord = None
    try:
        with _quiet_native_stderr():
            reader = decord.VideoReader(str(path), num_threads=1) if decord is not None else _PyAVReader(path)
    except Exception as error:
        raise TaskDataError(f"cannot open video ({_reason(error, path)}): damaged, or not a video file",
                            path=path, field="video") from error
    if len(reader) == 0:
        raise TaskDataError("video has no frames", path=path, field="video")
    return reader
