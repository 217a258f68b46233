"""Stage 2, rollout: the episode loop, schedules (who acts), policies, and collection over many episodes."""
