"""The shared core every stage builds on: records, interfaces, errors, config loading, the run store, atomic outputs
and resumable stages."""
