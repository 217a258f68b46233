"""Runtimes other than the default bubblewrap sandbox (env.runtime=...)."""
