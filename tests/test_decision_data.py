"""Decision data and scores: D4RL HDF5 and Minari loaders on fixture files, D4RL normalisation, the tasks."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from namm_suite.tasks import TASKS, TaskContext, TaskDataError
from namm_suite.tasks.decision import env_spec, load_d4rl, load_minari, normalised_score

OBS, ACT = 11, 3


def _write_d4rl(path, n=10, ends=(3, 7), timeout_at=(), drop=None, **override):
    rng = np.random.default_rng(0)
    arrays = {"observations": rng.standard_normal((n, OBS)).astype(np.float32),
              "actions": rng.uniform(-1, 1, (n, ACT)).astype(np.float32),
              "rewards": np.arange(n, dtype=np.float32), "terminals": np.isin(np.arange(n), ends),
              "timeouts": np.isin(np.arange(n), timeout_at), "next_observations": np.zeros((n, OBS), np.float32)}
    arrays.update(override)
    arrays.pop(drop, None)
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f[key] = value
    return arrays


def test_d4rl_splits_at_terminals_and_timeouts(tmp_path):
    arrays = _write_d4rl(tmp_path / "d.hdf5", n=12, ends=(3,), timeout_at=(7,))
    trajs = load_d4rl(tmp_path / "d.hdf5")
    assert [len(t) for t in trajs] == [4, 4, 4]  # 0-3 terminal, 4-7 timeout, 8-11 trailing
    assert [t.terminal for t in trajs] == [True, False, False]
    np.testing.assert_array_equal(trajs[1].observations, arrays["observations"][4:8])
    assert trajs[2].episode_return == 8 + 9 + 10 + 11
    np.testing.assert_array_equal(trajs[0].returns_to_go(), [6, 6, 5, 3])


@pytest.mark.parametrize("key", ["observations", "actions", "rewards", "terminals", "timeouts"])
def test_d4rl_missing_key_names_file_and_key(tmp_path, key):
    _write_d4rl(tmp_path / "d.hdf5", drop=key)
    with pytest.raises(TaskDataError, match=rf"d\.hdf5: field '{key}': missing key"):
        load_d4rl(tmp_path / "d.hdf5")


def test_d4rl_mismatched_lengths(tmp_path):
    _write_d4rl(tmp_path / "d.hdf5", actions=np.zeros((9, ACT), np.float32))
    with pytest.raises(TaskDataError, match=r"d\.hdf5: field 'actions': has 9 rows, expected 10 \(one per reward\)"):
        load_d4rl(tmp_path / "d.hdf5")


def test_d4rl_nan_observation_names_index_and_value(tmp_path):
    obs = np.zeros((10, OBS), np.float32)
    obs[6, 2] = np.nan
    _write_d4rl(tmp_path / "d.hdf5", observations=obs)
    with pytest.raises(TaskDataError, match=r"field 'observations': non-finite value nan at index \(6, 2\)"):
        load_d4rl(tmp_path / "d.hdf5")


def test_d4rl_missing_file(tmp_path):
    with pytest.raises(TaskDataError, match="nope.hdf5: D4RL HDF5 file not found"):
        load_d4rl(tmp_path / "nope.hdf5")


def _write_minari(folder, lengths=(5, 3), terminal_last=(True, False)):
    """A dataset written by minari's own storage writer (the layout ``minari`` 0.5 produces)."""
    import gymnasium as gym
    from minari.data_collector.episode_buffer import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage

    env = gym.make("Hopper-v5")
    (folder / "data").parent.mkdir(parents=True, exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    storage = MinariStorage.new(folder / "data", observation_space=env.observation_space,
                                action_space=env.action_space, data_format="hdf5")
    rng = np.random.default_rng(1)
    episodes = []
    for i, (n, term) in enumerate(zip(lengths, terminal_last, strict=True)):
        ends = np.zeros(n, bool)
        ends[-1] = True
        episodes.append(EpisodeBuffer(id=i, observations=rng.standard_normal((n + 1, OBS)),
                                      actions=rng.uniform(-1, 1, (n, ACT)), rewards=rng.standard_normal(n),
                                      terminations=ends & term, truncations=ends & (not term), infos={}))
    storage.update_episodes(episodes)
    return episodes


def test_minari_matches_what_minari_wrote(tmp_path):
    episodes = _write_minari(tmp_path / "hopper-tiny-v0")
    trajs = load_minari(tmp_path / "hopper-tiny-v0")
    assert [len(t) for t in trajs] == [5, 3] and [t.terminal for t in trajs] == [True, False]
    for traj, ep in zip(trajs, episodes, strict=True):
        np.testing.assert_allclose(traj.observations, ep.observations[:-1], rtol=1e-6)
        np.testing.assert_allclose(traj.actions, ep.actions, rtol=1e-6)
        np.testing.assert_allclose(traj.rewards, ep.rewards, rtol=1e-6)


def test_minari_errors_name_episode_and_key(tmp_path):
    _write_minari(tmp_path / "ds")
    file = tmp_path / "ds" / "data" / "main_data.hdf5"
    with h5py.File(file, "a") as f:
        f["episode_1/observations"][2, 0] = np.nan
    with pytest.raises(TaskDataError, match=r"field 'episode_1/observations': non-finite value nan at index \(2, 0\)"):
        load_minari(tmp_path / "ds")
    with h5py.File(file, "a") as f:
        del f["episode_1/observations"]
        f["episode_1/observations"] = np.zeros((3, OBS))  # should be 3 + 1 rows
    with pytest.raises(TaskDataError, match=r"'episode_1/observations': has 3 rows, expected 4 \(one more than the 3 rewards: "):
        load_minari(file)
    with h5py.File(file, "a") as f:
        del f["episode_0/rewards"]
    with pytest.raises(TaskDataError, match=r"main_data\.hdf5: field 'episode_0/rewards': missing key"):
        load_minari(tmp_path / "ds")
    with pytest.raises(TaskDataError, match="no Minari dataset here"):
        load_minari(tmp_path)


@pytest.mark.parametrize(("env", "ret", "score"), [
    ("hopper", -20.272305, 0.0), ("Hopper-v5", 3234.3, 100.0), ("hopper", 1000.0, 31.349),
    ("halfcheetah", 5000.0, 42.530), ("walker2d", 4592.3, 100.0), ("Walker2d-v5", 1000.0, 21.748),
])
def test_d4rl_normalised_score_golden(env, ret, score):
    assert normalised_score(env, ret) == pytest.approx(score, abs=1e-3)


@given(st.sampled_from(["hopper", "halfcheetah", "walker2d"]), st.floats(-1e4, 1e4), st.floats(0.1, 1e3))
@settings(max_examples=50, deadline=None)
def test_normalised_score_is_affine_and_increasing(env, ret, delta):
    spec = env_spec(env)
    assert normalised_score(env, ret + delta) > normalised_score(env, ret)
    assert normalised_score(env, ret + delta) - normalised_score(env, ret) == pytest.approx(
        100 * delta / (spec.expert_return - spec.random_return), rel=1e-6)


def test_unknown_environment_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown environment 'Ant-v5'; valid environments: halfcheetah "
                                         r"\(HalfCheetah-v5\), hopper \(Hopper-v5\), walker2d \(Walker2d-v5\)"):
        normalised_score("Ant-v5", 1.0)


def test_tasks_yield_seeded_episodes_and_score():
    task = TASKS.get("hopper")()
    episodes = task.episodes(TaskContext(length=300, seed=2, limit=3))
    assert [e.episode_id for e in episodes] == ["s2-0", "s2-1", "s2-2"]
    assert [e.inputs["env_seed"] for e in episodes] == [2000, 2001, 2002]
    assert {e.inputs["max_steps"] for e in episodes} == {100}
    assert episodes[0].inputs["env_id"] == "Hopper-v5"
    assert task.score(3234.3, episodes[0]) == pytest.approx(100.0)
    assert TASKS.get("walker2d")().episodes(TaskContext(length=3000))[0].inputs["env_id"] == "Walker2d-v5"
    with pytest.raises(ValueError, match="less than one step"):
        task.episodes(TaskContext(length=2))
