"""ChouBun loaders: the Japanese long-context benchmark of the NAMM authors, in LongBench's record schema.

Records are read by :class:`~.longbench.LongBenchFormatTask` (fields ``context``, ``input``, ``answers``,
optional ``length``, ``dataset``, ``language``, ``all_classes``, ``_id``; see :mod:`.longbench`). Our
assumptions about prompts, answer budgets and the per-character Japanese metrics are listed in
``choubun.yaml``. ``TaskContext.data_path`` is ``<dataset>.jsonl`` or a folder holding it (or
``choubun/<dataset>.jsonl``).
"""

from __future__ import annotations

from .longbench import HERE, register_benchmark

CHOUBUN_TASKS = register_benchmark(HERE / "choubun.yaml")
