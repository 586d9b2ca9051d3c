"""Decision tasks: Gymnasium MuJoCo control with D4RL-normalised returns."""
