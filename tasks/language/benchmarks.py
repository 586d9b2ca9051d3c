"""The benchmark loaders declared in YAML next to this module, registered on the task registry's first lookup.

- ``longbench.yaml``: LongBench and LongBench-E (``longbench_<dataset>``, ``longbench_e_<dataset>``);
- ``choubun.yaml``: ChouBun, the NAMM authors' Japanese benchmark in LongBench's record schema
  (``choubun_<dataset>``; our assumptions about its prompts and metrics are listed in the file);
- ``infinitebench.yaml``: InfiniteBench (``infinitebench_<task>``).

All three use one schema (see :func:`.longbench.register_benchmark`); user task files are one entry of it
(:mod:`.yaml_tasks`). Nothing is read at import: :func:`register_benchmarks` runs once, from the loader
``tasks.base`` adds to :data:`~namm_suite.tasks.base.TASKS`.
"""

from __future__ import annotations

from .infinitebench import register_infinitebench
from .longbench import HERE, register_benchmark


def register_benchmarks() -> list[str]:
    """Register every task of the three benchmark files; returns their names."""
    return [*register_benchmark(HERE / "longbench.yaml"), *register_benchmark(HERE / "choubun.yaml"),
            *register_infinitebench(HERE / "infinitebench.yaml")]
