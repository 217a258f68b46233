"""Stage 6, experiments: the paper's comparison (`oec experiment`), DAgger rounds, claims and their statistics, the
report, the demo."""
