"""The CMA-ES loop over the NAMM's flat parameter vector, with a staged curriculum and crash-safe state.

Every finished generation rewrites ``state.pkl`` atomically: the CMA-ES object (whose random stream is its
own ``numpy.random.RandomState``), the frozen statistics, the cached full-cache results, the curriculum
position and the best evaluations. A killed run resumes from the last finished generation and then
produces exactly the generations an uninterrupted run would have produced.

Checkpoints written in the run folder: ``stage<k>_best`` / ``namm_best`` (the spec's rule: the best evaluated
mean that beats the stage's starting point), ``namm_top`` (the best evaluated mean, bar or no bar) and
``namm_last`` (the latest evaluated mean).
"""

from __future__ import annotations

import logging
import pickle
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cma
import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..atomic import write_bytes_atomic
from ..namm.params import NUM_PARAMS
from ..policies.namm import NammPolicy
from ..provenance import provenance
from ..results import append_row, check_writable, read_rows
from .backends import make_backend
from .config import EvolutionConfig
from .fitness import FitnessEvaluator, member_policy, normalised_fitness

logger = logging.getLogger(__name__)


@dataclass
class EvolutionState:
    """Everything needed to continue a run exactly where it stopped."""

    es: Any
    mu: torch.Tensor
    var: torch.Tensor
    count: int
    generation: int = 0  # finished generations over all stages
    stage: int = 0
    stage_generation: int = 0  # finished generations of the current stage
    stage_started: bool = False
    full: dict[str, Any] = field(default_factory=dict)  # episode_id -> EpisodeResult (full cache)
    best: dict[int, tuple[float, int | None]] = field(default_factory=dict)  # stage -> (fitness, generation)
    top_evaluation: float = float("-inf")  # best evaluated mean of the run, bar or no bar
    last_record: dict[str, Any] | None = None  # log row of the latest finished generation (see _complete_log)


def new_strategy(config: EvolutionConfig, mean: np.ndarray | None = None) -> cma.CMAEvolutionStrategy:
    """CMA-ES from the ``cma`` package with the spec's λ, μ, σ0 and m0 = ``mean`` (default 0, the spec's;
    separable by default)."""
    stream = np.random.RandomState(config.seed)
    options = {"popsize": config.population, "seed": config.seed, "randn": stream.randn, "verbose": -9,
               "CMA_diagonal": config.separable, "tolfun": 0, "tolflatfitness": 10**9, "tolstagnation": 10**9}
    if config.parents:
        options["CMA_mu"] = config.parents
    return cma.CMAEvolutionStrategy(np.zeros(NUM_PARAMS) if mean is None else mean, config.sigma0, options)


def save_state(state: EvolutionState, path: Path) -> None:
    write_bytes_atomic(path, pickle.dumps(state))


def load_state(path: Path) -> EvolutionState | None:
    if not path.exists():
        return None
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle)
    except (pickle.UnpicklingError, EOFError) as err:
        raise RuntimeError(f"{path}: corrupt evolution state ({err}); move it away to start afresh") from None


def run_evolution(config: EvolutionConfig, out: Path, evaluator: FitnessEvaluator | None = None,
                  backend=None, max_generations: int | None = None, console: Console | None = None) -> EvolutionState:
    """Run (or resume) the evolution in ``out``; stop after ``max_generations`` more generations if given."""
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "log.jsonl"
    check_writable(log_path)
    evaluator = evaluator or FitnessEvaluator(config)
    backend = backend or make_backend(config, lambda: evaluator)
    state_path = out / "state.pkl"
    state = load_state(state_path)
    if state is None and config.init is not None:
        start = NammPolicy(checkpoint=config.init)
        if start.gamma != config.gamma:
            logger.warning("%s was made under γ = %g; this run's members use γ = %g", config.init, start.gamma,
                           config.gamma)
        state = EvolutionState(new_strategy(config, start.vector().numpy().astype(np.float64)), start.mu,
                               start.var, start.stats_count)
        logger.info("search mean and standardisation statistics from %s", config.init)
    elif state is None:
        stats = evaluator.statistics(evaluator.pool(config.stages[0].tasks[0]))
        state = EvolutionState(new_strategy(config), stats.mean, stats.var, stats.count)
        logger.info("standardisation statistics from %d EMA vectors", stats.count)
    else:
        logger.info("resuming after generation %d (stage %d)", state.generation, state.stage)
        _complete_log(log_path, state)
    pools = {}
    total = sum(s.generations for s in config.stages)
    remaining = total - state.generation if max_generations is None else min(max_generations, total - state.generation)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=console or Console(stderr=True)) as progress:
            bar = progress.add_task("evolution", total=total, completed=state.generation)
            for _ in range(remaining):
                stage = config.stages[state.stage]
                tasks = config.tasks_of(state.stage)
                for task in tasks:
                    if task not in pools:
                        pools[task] = _checked_pool(config, task, evaluator.pool(task))
                _ensure_full(evaluator, state, [e for t in tasks for e in pools[t]])
                start_fitness = None
                if not state.stage_started:  # m at the start of a stage sets the bar (logged, not saved)
                    start_fitness = _evaluate_mean(config, evaluator, backend, state, tasks, pools)
                    state.best[state.stage] = (start_fitness, None)
                    state.stage_started = True
                    logger.info("stage %d starts from evaluated fitness %.4f", state.stage + 1, start_fitness)
                record = _generation(config, backend, state, tasks, pools)
                if start_fitness is not None:
                    record["stage_start_fitness"] = start_fitness
                if state.stage_generation % config.eval_every == 0 or state.stage_generation == stage.generations:
                    score = _evaluate_mean(config, evaluator, backend, state, tasks, pools)
                    record["eval_fitness"] = score
                    _save_checkpoint(config, state, out / "namm_last", score)
                    if score > getattr(state, "top_evaluation", float("-inf")):  # older states lack the field
                        state.top_evaluation = score
                        _save_checkpoint(config, state, out / "namm_top", score)
                    if score > state.best[state.stage][0]:
                        state.best[state.stage] = (score, state.generation)
                        _save_checkpoint(config, state, out / f"stage{state.stage + 1}_best", score)
                        _save_checkpoint(config, state, out / "namm_best", score)
                if state.stage_generation == stage.generations and state.stage + 1 < len(config.stages):
                    state.stage, state.stage_generation, state.stage_started = state.stage + 1, 0, False
                state.last_record = record
                save_state(state, state_path)
                append_row(log_path, record)
                progress.update(bar, completed=state.generation,
                                description=f"stage {record['stage']} fit {record['fitness_mean']:.3f}")
                logger.info("gen %(generation)d stage %(stage)d best %(fitness_best).4f mean %(fitness_mean).4f "
                            "std %(fitness_std).4f kept %(kept_fraction).3f sigma %(sigma).4f", record)
    finally:
        backend.close()
    return state


def _complete_log(log_path: Path, state: EvolutionState) -> None:
    """Append the latest generation's log row if a crash came between saving the state and logging it
    (the state is saved first, so the log is behind by at most that one row)."""
    record = getattr(state, "last_record", None)  # older states lack the field
    rows = read_rows(log_path)
    logged = rows[-1]["generation"] if rows else 0
    if record is not None and logged < state.generation == record["generation"]:
        append_row(log_path, record)


def _checked_pool(config: EvolutionConfig, task: str, pool: list) -> list:
    """The task's training pool, refused when it is smaller than the episodes sampled per generation."""
    if len(pool) < config.episodes_per_task:
        raise ValueError(f"evolution config: task {task!r} gives {len(pool)} training episodes, fewer than "
                         f"episodes_per_task = {config.episodes_per_task}; give it more (task_options, e.g. "
                         f"{{{task}: {{repeats: N}}}}) or sample fewer")
    return pool


def _ensure_full(evaluator: FitnessEvaluator, state: EvolutionState, episodes: list) -> None:
    for episode in episodes:
        key = f"{episode.task}/{episode.episode_id}"
        if key not in state.full:
            state.full[key] = evaluator.full(episode)


def _generation(config: EvolutionConfig, backend, state: EvolutionState, tasks: list[str], pools) -> dict:
    start = time.perf_counter()
    generation = state.generation + 1
    rng = np.random.default_rng([config.seed, generation])
    sample = {t: [pools[t][i] for i in rng.choice(len(pools[t]), config.episodes_per_task, replace=False)]
              for t in tasks}
    episodes = [e for t in tasks for e in sample[t]]
    candidates = state.es.ask()
    size = config.batch_members
    groups = [np.stack(candidates[i:i + size]) for i in range(0, len(candidates), size)]
    results = [member for group in backend.map([(g, state.mu, state.var, episodes) for g in groups])
               for member in group]
    fitness, kept = [], []
    for member in results:
        f, k = _fitness(config, state, tasks, sample, member)
        fitness.append(f)
        kept.append(k)
    state.es.tell(candidates, [-f for f in fitness])  # cma minimises
    state.generation, state.stage_generation = generation, state.stage_generation + 1
    return {"generation": generation, "stage": state.stage + 1, "tasks": tasks,
            "fitness_best": max(fitness), "fitness_mean": float(np.mean(fitness)),
            "fitness_std": float(np.std(fitness)), "kept_fraction": float(np.mean(kept)),
            "sigma": float(state.es.sigma), "seconds": time.perf_counter() - start}


def _fitness(config, state, tasks, sample, member_results) -> tuple[float, float]:
    member, full, index = {}, {}, 0
    for task in tasks:
        n = len(sample[task])
        member[task] = member_results[index:index + n]
        full[task] = [state.full[f"{task}/{e.episode_id}"] for e in sample[task]]
        index += n
    return normalised_fitness(member, full, config.cache_penalty)


def _evaluate_mean(config, evaluator, backend, state: EvolutionState, tasks: list[str], pools) -> float:
    """Fitness of the search mean m on every pool episode of the stage's tasks (docs/namm-spec.md §8)."""
    episodes = [e for t in tasks for e in pools[t]]
    chunks = [episodes[i::max(1, config.workers)] for i in range(max(1, config.workers))]
    results = [group[0] for group in backend.map([(state.es.mean[None], state.mu, state.var, chunk)
                                                  for chunk in chunks if chunk])]
    by_id = {f"{e.task}/{e.episode_id}": r for chunk, res in zip(chunks, results, strict=False)
             for e, r in zip(chunk, res, strict=True)}
    member = {t: [by_id[f"{t}/{e.episode_id}"] for e in pools[t]] for t in tasks}
    full = {t: [state.full[f"{t}/{e.episode_id}"] for e in pools[t]] for t in tasks}
    return normalised_fitness(member, full, config.cache_penalty)[0]


def _save_checkpoint(config: EvolutionConfig, state: EvolutionState, path: Path, fitness: float) -> None:
    policy = member_policy(config)
    policy.set_vector(torch.as_tensor(state.es.mean, dtype=torch.float32))
    policy.set_stats(state.mu, state.var, state.count)
    policy.hparams = replace(policy.hparams, update_every=config.update_every)  # selection, kernel, γ: the policy's
    policy.save(path, provenance={
        **provenance(), "evolution": config.as_dict(), "generation": state.generation, "stage": state.stage + 1,
        "eval_fitness": fitness, "tasks": config.tasks_of(state.stage),
    })
