"""The task sets of `oec experiment`: the pool's (train), the held-out and the warm start's, each from its own seed.

The pools are collected on `suite.seed`, the held-out tasks come from `suite.seed + 1` and the warm start's from
`suite.warm_seed` (default `suite.seed + 2`), or from given files; the unseen-template held-out set (`unseen_heldout`)
from `suite.seed + 3`, with the suite's knobs but only the shapes no default task holds. They are checked disjoint
by content, and against the tasks the given student was trained on (`oec.tasks.disjoint`), before the experiment
writes anything, so that a refused config leaves nothing behind that a corrected rerun would have to match.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from oec.core.errors import InputError
from oec.core.types import Task
from oec.tasks.disjoint import check_disjoint
from oec.tasks.io import generate_tasks, load_tasks, write_tasks
from oec.tasks.toy_shapes import UNSEEN_SHAPES

# as the errors name them
LABELS = {"train": "train (pool)", "heldout": "held-out", "warm": "warm-start", "unseen": "unseen-template held-out"}


def warm_seed(suite) -> int:
    return suite.seed + 2 if suite.warm_seed is None else suite.warm_seed


class TaskSets:
    def __init__(self, cfg, root: Path):
        """CFG: an ExperimentConfig. Only the sets in use (a warm start only when it trains); nothing is written."""
        s, n_warm = cfg.suite, cfg.warm_start.trajectories
        if n_warm and s.train_file and not s.warm_file:
            raise InputError("suite.train_file is given but not suite.warm_file: the warm start needs tasks of its "
                             "own, disjoint from the pool's; set suite.warm_file (or warm_start.trajectories: 0)")
        self.cfg, self.sets = cfg, {}  # name -> (file, the tasks to generate into it; None when the file is given)
        for name, split, n, seed, given in (("train", "train", s.train, s.seed, s.train_file),
                                            ("heldout", "heldout", s.heldout, s.seed + 1, s.heldout_file),
                                            ("warm", "train", n_warm, warm_seed(s), s.warm_file)):
            if n:
                self.sets[name] = (Path(given), None) if given else (
                    root / f"tasks/{name}.jsonl", generate_tasks("toy", split, n, seed, s.preset, **s.knobs))
        if cfg.unseen_heldout:  # the file names its size: another size is another set (and view)
            knobs = {**s.knobs, "shapes": list(UNSEEN_SHAPES)}
            try:
                made = generate_tasks("toy", "heldout", cfg.unseen_heldout, s.seed + 3, s.preset, **knobs)
            except InputError as e:
                raise InputError(f"unseen_heldout: {e}") from None
            self.sets["unseen"] = (root / f"tasks/unseen-{cfg.unseen_heldout}.jsonl", made)

    def check(self) -> None:
        """The sets in use share no task, and the given student trained on none of them."""
        tasks: dict[str, list[Task]] = {}
        for name, (path, made) in self.sets.items():
            if name != "train" or self.cfg.arms:  # no arms: no pools
                got = load_tasks(path) if made is None else made
                tasks[LABELS[name]] = got[: self.cfg.warm_start.trajectories] if name == "warm" else got
        check_disjoint(tasks, self.cfg.student_model)

    def write(self, log: Callable[[str], None]) -> tuple[Path, Path, Path | None]:
        """Write the generated sets (unless there from an earlier run); return the train, held-out and warm files."""
        for name, (path, made) in self.sets.items():
            if made is not None and not path.exists():
                write_tasks(made, path)
                log(f"tasks: {len(made)} {name} tasks -> {path}")
        return self.sets["train"][0], self.sets["heldout"][0], self.sets["warm"][0] if "warm" in self.sets else None

    def unseen(self) -> Path | None:
        return self.sets["unseen"][0] if "unseen" in self.sets else None
