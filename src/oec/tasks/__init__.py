"""Stage 1, tasks: the embedded toy suite, SWE-bench/SWE-smith importers, bug injection into real repos, tasks files."""
