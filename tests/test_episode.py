"""run_episode: one episode -> a typed ResultRow (ok and failed), as the runner writes it."""

from __future__ import annotations

import json

from namm_suite.episode import EpisodeSettings, ResultRow, run_episode
from namm_suite.policies import PolicySpec
from namm_suite.tasks import TASKS, TaskContext

from .fake_sweep import FakeAdapter

SETTINGS = EpisodeSettings(adapter="language", model="toy", seed=3, length=32, update_every=16, max_new_tokens=7,
                           chat_template="none", device="cpu")


def episode():
    task = TASKS.get("toy_echo")()
    return task, task.episodes(TaskContext(tokenizer=None, length=32, seed=3, limit=2))[1]


def test_ok_row_fields_and_budget():
    task, ep = episode()
    row = run_episode(FakeAdapter(), task, ep, PolicySpec("h2o", {"recent_ratio": 0.25}), 8, SETTINGS)
    assert isinstance(row, ResultRow) and row.status == "ok" and row.score == 1.0 and row.prediction == "1"
    low = run_episode(FakeAdapter(), task, ep, PolicySpec("h2o"), 4, SETTINGS)
    assert low.score == 0.0 and low.stats["mean_kept"] == 4.0  # the budget reached the manager
    written = row.as_dict()
    assert written["policy_options"] == {"recent_ratio": 0.25} and written["max_new_tokens"] == 7
    assert (written["chat_template"], written["protocol"], written["device"]) == ("none", "scheduled", "cpu")
    assert written["mean_kept"] == 8.0 and "stats" not in written and "label" not in written
    assert json.loads(json.dumps(written)) == written


class Broken(FakeAdapter):
    def run(self, episode, manager):
        raise RuntimeError("out of\n  memory")


def test_failure_is_a_row_with_its_traceback_kept_out():
    task, ep = episode()
    row = run_episode(Broken(), task, ep, PolicySpec("full", label="ref"), None, SETTINGS)
    assert row.status == "error" and row.error == "RuntimeError: out of memory"
    assert "Traceback" in row.traceback and "raise RuntimeError" in row.traceback
    written = row.as_dict()
    assert "traceback" not in written and "score" not in written and written["label"] == "ref"


def test_bad_policy_options_fail_the_episode_not_the_caller():
    task, ep = episode()
    row = run_episode(FakeAdapter(), task, ep, PolicySpec("h2o", {"nope": 1}), 8, SETTINGS)
    assert row.status == "error" and "nope" in row.error
