import random

import pytest

from oec.suites.toy import ToyConfig, generate
from oec.tasks import write_tasks


@pytest.fixture(scope="session")
def train_tasks():
    return generate("train", 12, seed=0)


@pytest.fixture(scope="session")
def varied_tasks():
    """Tasks across the difficulty knobs: no hops, deep chains, one-liners only, many modules."""
    cfgs = [ToyConfig(hops=0), ToyConfig(hops=3, modules=4), ToyConfig(shapes=["clamp", "sign", "count_above"]),
            ToyConfig(modules=1, functions_per_module=5, hops=0), ToyConfig(direct_test_prob=0.0, hops=2)]
    out = []
    for i, cfg in enumerate(cfgs):
        out += [t.model_copy(update={"task_id": f"{t.task_id}-k{i}"}) for t in generate("heldout", 3, seed=10 + i, cfg=cfg)]
    return out


@pytest.fixture
def tasks_file(tmp_path, train_tasks):
    return write_tasks(train_tasks[:6], tmp_path / "tasks.jsonl")


@pytest.fixture
def rng():
    return random.Random(0)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A tiny untrained student built offline from the toy tasks (the real `oec student init` code path)."""
    from oec.student import StudentConfig, init_student

    return init_student(generate("train", 30, seed=0), tmp_path_factory.mktemp("models") / "tiny",
                        StudentConfig(hidden_size=64, layers=2, heads=2, vocab_size=1024, context=1024))
