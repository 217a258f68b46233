"""Where collection runs its episodes: threads in this process (local) or actors on a Ray cluster (ray)."""
