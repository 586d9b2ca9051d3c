"""Tasks: registered by name, each yields typed :class:`Episode`s and scores predictions.

How a runner uses them::

    from namm_suite.tasks import TASKS, TaskContext
    task = TASKS.get("passkey")()                       # unknown names raise UnknownTaskError
    for episode in task.episodes(TaskContext(tokenizer=tok, length=4096, seed=0, options={"depths": [0.5]})):
        score = task.score(model_answer(episode.inputs["prompt"]), episode)

``describe_tasks()`` lists them for ``namm tasks``; ``load_task_dir(path)`` registers a folder of user task
YAML files (``--include-path``). Bad data or task files raise :class:`TaskDataError` naming file, line, field.
The registry fills on its first lookup (built-in task modules and benchmark YAML files), not at import; task
metrics live in the one registry :data:`~namm_suite.tasks.metrics.METRICS`.
"""

from .base import (
    TASKS,
    Episode,
    Task,
    TaskContext,
    TaskDataError,
    TaskSpec,
    UnknownTaskError,
    describe_tasks,
    register_task,
    with_options,
)
from .language import load_task_dir, load_task_file

__all__ = [
    "TASKS", "Episode", "Task", "TaskContext", "TaskDataError", "TaskSpec", "UnknownTaskError", "describe_tasks",
    "load_task_dir", "load_task_file", "register_task", "with_options",
]
