"""Bad media, fuzzed: video files (empty, truncated, zero frames, garbage) and D4RL HDF5 files (missing keys,
ragged arrays, wrong dimensions or types, NaN, truncated files).

As in ``test_fuzz_inputs``: a file either loads into well-formed data, or the error is a
:class:`TaskDataError` that names the file — never a decoder's or h5py's own exception.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from namm_suite.tasks.base import TaskDataError
from namm_suite.tasks.decision.d4rl import REQUIRED_KEYS, load_d4rl
from namm_suite.tasks.video.frames import read_frames

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@contextlib.contextmanager
def scratch():
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


def _clip(n_frames: int, container: str, seed: int) -> bytes:
    """A 32×32 MPEG-4 clip of ``n_frames`` frames (0: a container with a stream header and no frames)."""
    import av

    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        out.start_encoding()
        for _ in range(n_frames):
            image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    return buffer.getvalue()


@FUZZ
@given(n_frames=st.integers(0, 6), container=st.sampled_from(["mp4", "matroska"]), seed=st.integers(0, 99),
       cut=st.none() | st.floats(0, 1), garbage=st.none() | st.binary(max_size=64),
       ask=st.none() | st.integers(-1, 8))
def test_fuzzed_video_files_decode_or_name_the_file(n_frames, container, seed, cut, garbage, ask):
    data = garbage if garbage is not None else _clip(n_frames, container, seed)
    if cut is not None:
        data = data[: int(len(data) * cut)]
    with scratch() as folder:
        path = folder / ("clip.mp4" if container == "mp4" else "clip.mkv")
        path.write_bytes(data)
        try:
            frames = read_frames(path, ask)
        except TaskDataError as err:
            assert str(path) in str(err) and err.field in ("video", "frames"), err
            return
        assert garbage is None and n_frames > 0 and (ask is None or 0 < ask <= n_frames)
        assert frames.dtype == np.uint8 and frames.shape[1:] == (32, 32, 3)
        assert frames.shape[0] == (ask if ask is not None else frames.shape[0]) and frames.shape[0] >= 1


def test_missing_video_is_named(tmp_path):
    try:
        read_frames(tmp_path / "nope.mp4", 4)
    except TaskDataError as err:
        assert "nope.mp4" in str(err) and "not found" in str(err)
    else:
        raise AssertionError("a missing file must raise")


def _valid_arrays(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    terminals = np.zeros(n, bool)
    terminals[rng.integers(0, n)] = True
    return {"observations": rng.normal(size=(n, 3)).astype(np.float32),
            "actions": rng.normal(size=(n, 2)).astype(np.float32),
            "rewards": rng.normal(size=n).astype(np.float32), "terminals": terminals,
            "timeouts": np.zeros(n, bool)}


def _broken(value: np.ndarray, how: str, n: int) -> np.ndarray | str | None:
    if how == "ragged":
        return np.concatenate([value, value[:1]])  # one row too many
    if how == "short":
        return value[: n - 1]
    if how == "nan":
        out = value.astype(np.float32).copy()
        out.reshape(-1)[0] = np.nan
        return out
    if how == "inf":
        out = value.astype(np.float32).copy()
        out.reshape(-1)[-1] = -np.inf
        return out
    if how == "flat":
        return value.reshape(-1)
    if how == "deep":
        return value.reshape(len(value), -1, 1)
    if how == "strings":
        return np.array([b"x"] * len(value))
    if how == "scalar":
        return np.float32(1.0)
    return None  # "group": a group where a dataset should be; "drop": the key is missing


HOW = ["ragged", "short", "nan", "inf", "flat", "deep", "group", "drop"]
# damage that h5py itself chokes on (scalar/string datasets, truncated or empty files): named errors too
KNOWN_GAPS = [("rewards", "scalar", None), ("observations", "strings", None), (None, None, 0.5), (None, None, 0.0)]


@FUZZ
@given(n=st.integers(1, 12), seed=st.integers(0, 99),
       damage=st.lists(st.tuples(st.sampled_from(REQUIRED_KEYS), st.sampled_from(HOW)), max_size=2))
def test_fuzzed_d4rl_files_load_or_name_file_and_key(n, seed, damage):
    check_d4rl(n, seed, damage, None)


@pytest.mark.parametrize(("key", "how", "cut"), KNOWN_GAPS)
def test_d4rl_unreadable_datasets_and_files_are_named(key, how, cut):
    check_d4rl(4, 0, [(key, how)] if key else [], cut)


def check_d4rl(n: int, seed: int, damage: list[tuple[str, str]], cut: float | None) -> None:
    """Write a D4RL file with ``damage`` (and cut to ``cut`` of its bytes); it loads or names the file."""
    import h5py

    arrays: dict[str, object] = dict(_valid_arrays(n, seed))
    for key, how in damage:
        arrays[key] = _broken(np.asarray(arrays[key]), how, n) if how not in ("group", "drop") else how
    with scratch() as folder:
        path = folder / "hopper.hdf5"
        with h5py.File(path, "w") as f:
            for key, value in arrays.items():
                if isinstance(value, str):  # "group" or "drop"
                    if value == "group":
                        f.create_group(key)
                    continue
                f.create_dataset(key, data=value)
        if cut is not None:
            path.write_bytes(path.read_bytes()[: int(path.stat().st_size * cut)])
        try:
            trajectories = load_d4rl(path)
        except TaskDataError as err:
            assert str(path) in str(err), err
            return
    assert sum(len(t) for t in trajectories) == n
    for t in trajectories:
        assert t.observations.shape == (len(t), 3) and t.actions.shape == (len(t), 2)
        assert np.isfinite(t.observations).all() and np.isfinite(t.rewards).all()


@pytest.mark.parametrize("content", [b"", b"not an hdf5 file"])
def test_minari_non_hdf5_file_is_named(tmp_path, content):
    from namm_suite.tasks.decision.minari_data import load_minari

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "main_data.hdf5").write_bytes(content)
    with pytest.raises(TaskDataError, match="main_data.hdf5.*not a readable HDF5 file"):
        load_minari(tmp_path)
