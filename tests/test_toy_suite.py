import re
import subprocess
import sys

import pytest

from oec.tasks.toy import ToyConfig, generate, split_of
from oec.tasks.toy_shapes import LEAF_SHAPES, MUTATION_KINDS, UNSEEN_SHAPES, leaf


def _identifiers(task):
    names = {task.meta["package"]}
    for path, text in task.repo.files.items():
        names |= {n for n in re.findall(r"^def (\w+)\(", text, re.M) if not n.startswith("test_")}
        if not path.startswith("tests/") and path.endswith(".py") and not path.endswith("__init__.py"):
            names.add(path.rsplit("/", 1)[1][:-3])
    return names


def test_generation_is_deterministic():
    assert generate("train", 5, seed=3) == generate("train", 5, seed=3)
    assert generate("train", 5, seed=3) != generate("train", 5, seed=4)


def test_splits_have_disjoint_names():
    train = set().union(*(_identifiers(t) for t in generate("train", 40, seed=0)))
    held = set().union(*(_identifiers(t) for t in generate("heldout", 40, seed=1)))
    assert train and held and not (train & held)
    assert {split_of(n) for n in train} == {"train"}


def test_every_mutation_kind_and_shape_is_reachable():
    assert len(MUTATION_KINDS) >= 6
    for kind in MUTATION_KINDS:
        tasks = generate("train", 4, seed=1, cfg=ToyConfig(mutation_kinds=[kind]))
        assert {t.meta["mutation"] for t in tasks} == {kind}
    import random

    for shape in LEAF_SHAPES + UNSEEN_SHAPES:  # each mutation really changes behaviour on some input
        fn = leaf(shape, "f", random.Random(0))
        for m in fn.mutations:
            rng = random.Random(1)
            assert any(fn.impl(*a) != m.impl(*a) for a in (fn.inputs(rng) for _ in range(200))), (shape, m.kind)


def test_task_shape_and_statement():
    for t in generate("train", 10, seed=0, cfg=ToyConfig(hops=2)):
        entry = t.meta["chain"][0]
        assert f"`{entry}(" in t.problem_statement
        assert len(t.meta["chain"]) == 3
        assert t.FAIL_TO_PASS and t.PASS_TO_PASS and not set(t.FAIL_TO_PASS) & set(t.PASS_TO_PASS)
        assert t.gold_patch.startswith(f"--- a/{t.meta['buggy_file']}")
        # the fix is not leaked by the statement: the buggy line's fixed text appears nowhere in the statement
        added = [ln[1:].strip() for ln in t.gold_patch.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
        assert all(a not in t.problem_statement for a in added if a)


def test_hidden_direct_test_means_multi_hop():
    tasks = generate("train", 10, seed=0, cfg=ToyConfig(direct_test_prob=0.0, hops=1))
    for t in tasks:
        buggy = t.meta["chain"][-1]
        assert not any(tid.endswith(f"::test_{buggy}") for tid in t.FAIL_TO_PASS)
        assert len(t.FAIL_TO_PASS) == 1


def test_unseen_shapes_are_in_no_default_task_set():
    """The held-out templates that measure generalisation: no default or preset task holds one, asked for they are all
    there, and each is a shape of its own (no unseen function body equals a default shape's)."""
    from oec.tasks.toy import PRESETS

    assert not set(UNSEEN_SHAPES) & set(ToyConfig().shapes)
    for preset in (None, *PRESETS):
        cfg = ToyConfig(**PRESETS.get(preset, {}))
        assert not {t.meta["shape"] for t in generate("train", 30, seed=3, cfg=cfg)} & set(UNSEEN_SHAPES)
    unseen = generate("heldout", 40, seed=3, cfg=ToyConfig(shapes=list(UNSEEN_SHAPES), hops=0))
    assert {t.meta["shape"] for t in unseen} == set(UNSEEN_SHAPES)
    import random

    def bodies(shapes):
        return {tuple(leaf(s, "f", random.Random(i)).body) for s in shapes for i in range(20)}
    assert not bodies(UNSEEN_SHAPES) & bodies(LEAF_SHAPES)


@pytest.mark.tools
def test_the_expert_resolves_unseen_shape_tasks_with_real_pytest(tmp_path):
    """Each unseen template is a real bug: its tests fail in the sandbox, the scripted expert's fix makes them pass
    (one-hop tasks, so the bug is also one call away)."""
    from oec.core.store import read_trajectories
    from oec.tasks.io import write_tasks

    tasks = [t for seed, shape in enumerate(UNSEEN_SHAPES)  # a seed per shape: ids name the seed and index
             for t in generate("heldout", 2, seed=seed, cfg=ToyConfig(shapes=[shape], hops=1))]
    path = write_tasks(tasks, tmp_path / "tasks.jsonl")
    subprocess.run([sys.executable, "-m", "oec", "collect", "--tasks", str(path), "--out", str(tmp_path / "run"),
                    "--mode", "expert", "--workers", "2", "--quiet"], check=True, capture_output=True)
    trajs = read_trajectories(tmp_path / "run")
    assert len(trajs) == 10 and all(t.resolved for t in trajs), [t.task_id for t in trajs if not t.resolved]


def test_shapes_without_a_mutation_of_the_kinds_asked_are_refused_not_drawn_forever():
    from oec.core.errors import InputError
    from oec.tasks.io import generate_tasks

    with pytest.raises(InputError, match="none has a mutation of the kinds"):  # refused at the config, before a draw
        generate_tasks("toy", "heldout", 1, 0, shapes=list(UNSEEN_SHAPES), mutation_kinds=["swapped_args"])
    assert len(generate("heldout", 2, seed=0, cfg=ToyConfig(shapes=["cap"], mutation_kinds=["removed_branch"]))) == 2
