"""Video tasks: synthetic clips written with PyAV (needle, count, order), LongVideoBench and MLVU loaders."""

from . import longvideobench, mlvu, synthetic  # noqa: F401  (registration)
