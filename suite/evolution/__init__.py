"""NAMM evolution with CMA-ES (docs/namm-spec.md §8): config, fitness, backends and the resumable loop."""

from .config import EvolutionConfig, Stage
from .fitness import EpisodeResult, FitnessEvaluator, normalised_fitness
from .loop import EvolutionState, load_state, run_evolution

__all__ = ["EpisodeResult", "EvolutionConfig", "EvolutionState", "FitnessEvaluator", "Stage", "load_state",
           "normalised_fitness", "run_evolution"]
