"""A registered toy task and a fake adapter: the runner's mechanics without a model."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from namm_suite.adapters.base import Prediction
from namm_suite.manager import MemoryStats
from namm_suite.tasks.base import TASKS, Episode, Task, TaskContext, register_task

if "toy_echo" not in TASKS:

    @register_task("toy_echo")
    class ToyEchoTask(Task):
        """Episodes whose answer is their own index; score 1 when the prediction contains it."""

        metric = "contains"
        source = "generated in tests"

        def episodes(self, context: TaskContext) -> list[Episode]:
            n = context.limit or 4
            return [Episode("toy_echo", f"s{context.seed}-{i}", {"prompt": str(i)}, (str(i),)) for i in range(n)]

        def score(self, prediction: str, episode: Episode) -> float:
            return float(episode.references[0] in prediction)


class FakeAdapter:
    """Answers correctly only when the budget is at least 8 (so policies and sizes differ)."""

    modality = "language"
    tokenizer = None

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def run(self, episode: Episode, manager) -> Prediction:
        time.sleep(self.delay)
        budget = manager.config.budget
        good = budget is None or budget >= 8
        kept = float(budget or 16)
        return Prediction(episode.references[0] if good else "?", MemoryStats(mean_kept=kept), 0.0)


if __name__ == "__main__":
    # python -m tests.fake_sweep OUT: a slow sweep for the SIGKILL test;
    # python -m tests.fake_sweep OUT --cli [ARGS]: the same sweep through `namm run` (exit code and stderr)
    from namm_suite.runner import SweepConfig, run_sweep

    if sys.argv[2:3] == ["--cli"]:
        import namm_suite.adapters.base as adapters
        from namm_suite.cli import main

        delay = float(os.environ.get("FAKE_SWEEP_DELAY", "0.05"))  # seconds per episode
        adapters.create_adapter = lambda name, model: FakeAdapter(delay=delay)
        sys.exit(main(["run", "--task", "toy_echo", "--policy", "full,h2o,streaming", "--cache-size", "4,8",
                       "--seed", "0,1", "--limit", "3", "--out", sys.argv[1], *sys.argv[3:]]))
    config = SweepConfig(tasks=["toy_echo"], policies=["full", "h2o", "streaming"], cache_sizes=[4, 8],
                         seeds=[0, 1], limit=3)
    run_sweep(config, Path(sys.argv[1]), adapter=FakeAdapter(delay=0.05))
