"""The core-loop issue's acceptance checks at full size (slow; kept in CI)."""

import pytest

from oec.rollout.collect import CollectConfig, collect
from oec.viewer.show import summarize
from oec.tasks.io import generate_tasks, write_tasks


@pytest.mark.slow
def test_expert_resolves_all_200_train_and_50_heldout(tmp_path):
    for split, n, seed in (("train", 200, 0), ("heldout", 50, 1)):
        path = write_tasks(generate_tasks("toy", split, n, seed), tmp_path / f"{split}.jsonl")
        collect(CollectConfig(tasks=str(path), out=str(tmp_path / split), mode="expert", workers=4), progress=False)
        s = summarize(tmp_path / split)
        assert (s["n"], s["resolved"]) == (n, n), s
