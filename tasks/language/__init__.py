"""Language tasks: synthetic long-context generators and loaders for LongBench(-E), InfiniteBench and ChouBun.

Importing this package registers every task (the benchmark loaders read their YAML declarations, not data).
"""

from . import choubun, infinitebench, longbench, prose_qa, synthetic  # noqa: F401 - registration
from .metrics import METRICS, best_score
from .synthetic import make_passkey, passkey_score
from .yaml_tasks import load_task_dir, load_task_file

__all__ = ["METRICS", "best_score", "load_task_dir", "load_task_file", "make_passkey", "passkey_score"]
