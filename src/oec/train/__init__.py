"""Stage 4, train: make a tiny student, fine-tune it with TRL."""
