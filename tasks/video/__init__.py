"""Video tasks: synthetic clips written with PyAV, LongVideoBench and MLVU loaders."""
