"""Divergence-triggered switching: hand over to the expert when the student's state leaves the expert's distribution.

`oec shift` saves, for every turn with enough expert trajectories, the expert's Gaussian (full embedding space,
Ledoit-Wolf) and its own leave-one-out Mahalanobis distances. At each student turn the history is embedded the same way, its distance under the expert
Gaussian of that turn (or of the last fitted turn, past the end) is computed, and the expert takes over when the
distance exceeds the chosen quantile of the expert's own distances at that turn. Once switched, the expert keeps
control.
"""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from oec.core.protocols import Policy, Probe
from oec.rollout.schedules import Plan
from oec.shift.embed import history_text, make_embedder
from oec.shift.stats import mahalanobis
from oec.core.types import Actor, Step, Task

_models: dict[str, "TriggerModel"] = {}
_models_lock = threading.Lock()


class TriggerModel:
    def __init__(self, directory: str | Path):
        directory = Path(directory)
        meta_path = directory / "trigger.json"
        if not meta_path.exists():
            raise ValueError(f"--switch trigger:{directory}: no trigger.json there; make it with "
                             f"`oec shift --population student=RUN --population expert=RUN --out {directory}`")
        self.meta = json.loads(meta_path.read_text())
        if not self.meta["turns"]:
            raise ValueError(f"{meta_path}: no turn had enough expert trajectories to fit; collect more expert runs")
        arrays = np.load(directory / "trigger.npz")
        self.turns = {t: {k: arrays[f"t{t}_{k}"] for k in ("mean", "precision", "dists")}
                      for t in self.meta["turns"]}
        self.embedder = make_embedder(self.meta["embedder"], self.meta.get("cache") or Path.home() / ".cache/oec/embeddings")

    @classmethod
    def load(cls, directory: str | Path) -> TriggerModel:
        key = str(Path(directory).resolve())
        with _models_lock:
            if key not in _models:
                _models[key] = cls(directory)
            return _models[key]

    def score(self, task: Task, steps: Sequence[Step], quantile: float) -> tuple[float, float, int]:
        """(distance, threshold, fitted turn used) for the state after STEPS."""
        turn = len(steps)
        fitted = max((t for t in self.turns if t <= turn), default=min(self.turns))
        m = self.turns[fitted]
        text = history_text(steps, task.problem_statement, self.meta["role_only"], self.meta["actions_only"])
        distance = float(mahalanobis(self.embedder.embed([text]), m["mean"], m["precision"])[0])
        return distance, float(np.quantile(m["dists"], quantile)), fitted


class Trigger:
    """OEC with the switch turn chosen by the divergence detector instead of a sampler."""

    mode = "oec"

    def __init__(self, directory: str, quantile: float = 0.99):
        if not 0 < quantile < 1:
            raise ValueError(f"--trigger-threshold must be a quantile in (0, 1), got {quantile}")
        self.model, self.quantile = TriggerModel.load(directory), quantile

    def plan(self, task: Task, policies: dict[Actor, Policy], rng: random.Random, probe: Probe) -> Plan:
        info: dict = {"sampler": "trigger", "quantile": self.quantile, "scores": [], "switch_turn": None}

        def choose(turn: int, steps: Sequence[Step]) -> Actor:
            if info["switch_turn"] is not None:
                return "expert"
            distance, threshold, fitted = self.model.score(task, steps, self.quantile)
            info["scores"].append({"turn": turn, "distance": round(distance, 4), "threshold": round(threshold, 4)})
            if distance > threshold:
                info["switch_turn"] = turn
                info["reason"] = (f"turn {turn}: Mahalanobis distance {distance:.2f} under the expert's turn-{fitted} "
                                  f"Gaussian exceeds its {self.quantile:g} quantile {threshold:.2f}")
                return "expert"
            return "student"

        return Plan(policies, choose, info=info)
