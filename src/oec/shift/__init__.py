"""Stage 5, shift: covariate shift between populations of trajectories, turn by turn."""
