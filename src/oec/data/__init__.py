"""Stage 3, data: filter trajectories, build masked training data, import other agents' demonstrations."""
