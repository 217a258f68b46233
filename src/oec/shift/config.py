"""How `oec shift` embeds and compares: its config alone, so the CLI reads it without loading numpy, scipy and
scikit-learn (2 s of every `oec` command otherwise)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ShiftConfig(BaseModel):
    """How `oec shift` embeds and compares."""

    model_config = ConfigDict(extra="forbid")
    embedder: str = Field("minilm", description="minilm | st:PATH_OR_NAME | openai:MODEL@URL")
    pca: int = Field(16, ge=1, description="principal dimensions kept per turn (at most half the smaller sample)")
    bootstrap: int = Field(200, ge=0, description="bootstrap replicates for the 95% intervals")
    role_only: bool = Field(False, description="drop the system note and the problem statement from histories")
    actions_only: bool = Field(False, description="embed only the actions, not the observations")
    min_samples: int = Field(8, ge=3, description="trajectories each side of a pair needs at a turn (each side holds "
                             "half of the tasks) for the turn to be reported")
    max_turn: int | None = Field(None, ge=0)
    reference: str = Field("expert", description="the population the others are compared with")
    seed: int = 0
    cache: str | None = Field(None, description="embedding cache directory (default: ~/.cache/oec/embeddings)")
    tasks: str | None = Field(None, description="tasks file (default: the one named in each run's manifest)")
