"""The embedded "toy SWE" suite: tiny generated Python packages with real pytest tests and one injected bug.

A task is a package of a few modules of small functions. A chain of `hops` wrapper functions, each in another module,
leads from the function the issue talks about to the one with the bug, so localisation takes several
grep -> cat rounds (errors compound over turns, which is what OEC corrects). Names are random syllables and the
train / held-out splits use disjoint name sets, so an agent must copy names from its context, not memorise them.
"""

from __future__ import annotations

import difflib
import hashlib
import random

from pydantic import BaseModel, ConfigDict, Field, model_validator

from oec.core.errors import InputError
from oec.core.types import InlineRepo, Task
from oec.tasks.toy_shapes import (
    LEAF_SHAPES,
    MUTATION_KINDS,
    ONE_LINERS,
    UNSEEN_SHAPES,
    Fn,
    Mutation,
    leaf,
    rewrap,
    wrapper,
)

CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"
SPLITS = ("train", "heldout")


class ToyConfig(BaseModel):
    """Difficulty knobs of the toy suite (all exposed as `oec tasks generate` options)."""

    model_config = ConfigDict(extra="forbid")
    modules: int = Field(3, ge=1, le=8, description="modules in the package")
    functions_per_module: int = Field(3, ge=1, le=8, description="functions in each module")
    hops: int = Field(1, ge=0, le=4, description="wrappers between the function in the issue and the buggy one")
    shapes: list[str] = Field(list(LEAF_SHAPES), description=f"leaf function shapes; one-liners: {ONE_LINERS}")
    mutation_kinds: list[str] = Field(list(MUTATION_KINDS), description="mutation families to inject")
    direct_test_prob: float = Field(0.5, ge=0, le=1, description="chance the buggy function has its own visible test")

    @model_validator(mode="after")
    def _chain_fits(self) -> ToyConfig:
        # each wrapper lives in another module than the function it calls: a chain as long as the module list
        # comes back to a module it started from, and the package imports itself in a loop (tasks that fail to
        # collect, which no agent can fix)
        if self.hops >= self.modules:
            raise ValueError(f"hops={self.hops} needs at least {self.hops + 1} modules (modules={self.modules}): "
                             "each wrapper sits in another module; raise modules or lower hops")
        return self

    @model_validator(mode="after")
    def _a_bug_can_be_drawn(self) -> ToyConfig:
        # the generator draws shapes until one has a mutation of the kinds asked: with none it would never end (a
        # shape's mutation kinds do not depend on its random constants; unknown names are refused where they are used)
        kinds = set(self.mutation_kinds) & set(MUTATION_KINDS)
        known = [s for s in self.shapes if s in LEAF_SHAPES + UNSEEN_SHAPES]
        drawable = any(m.kind in kinds for s in known for m in leaf(s, "f", random.Random(0)).mutations)
        if kinds and known and not drawable:
            raise ValueError(f"shapes {self.shapes}: none has a mutation of the kinds {sorted(kinds)}; add shapes or "
                             "kinds")
        return self


# Named sets of knobs, the one place a setting is defined: configs say `suite.preset: multihop` and
# `oec tasks generate --preset multihop`; knobs given beside a preset override its values.
PRESETS: dict[str, dict] = {
    # the shipped warm student's setting: the issue names the buggy function, the expert's route is 6 turns, and the
    # student's failures are mis-copied names rather than wrong decisions
    "easy": {"hops": 0, "direct_test_prob": 1.0, "modules": 2, "functions_per_module": 2},
    # where OEC's mechanism acts: the bug is one or two calls away from the function the issue text names, in
    # another module, and often has no test of its own, so the student must decide where to look and what to edit;
    # the values were chosen by measurement (bench/RESULTS.md §14)
    "multihop": {"hops": 1, "direct_test_prob": 0.5, "modules": 3, "functions_per_module": 2},
}


def toy_config(preset: str | None = None, **knobs) -> ToyConfig:
    """PRESET's knobs (if any) with KNOBS on top (None values are left out: an option that was not given)."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown toy preset {preset!r}; known presets: {', '.join(sorted(PRESETS))}")
    base = dict(PRESETS[preset]) if preset else {}
    return ToyConfig(**{**base, **{k: v for k, v in knobs.items() if v is not None}})


def split_of(name: str) -> str:
    """Every identifier belongs to exactly one split, so the splits' names are disjoint whatever the seeds."""
    return SPLITS[hashlib.sha256(name.encode()).digest()[0] % 2]


class NamePool:
    def __init__(self, rng: random.Random, split: str):
        self.rng, self.split, self.used = rng, split, set()

    def __call__(self, words: int = 2) -> str:
        """A fresh identifier of WORDS two-syllable words, e.g. `tago_dipe`."""
        while True:
            name = "_".join(
                "".join(self.rng.choice(CONSONANTS) + self.rng.choice(VOWELS) for _ in range(2)) for _ in range(words)
            )
            if name not in self.used and split_of(name) == self.split:
                self.used.add(name)
                return name


def _gen_inputs(rng: random.Random, fn: Fn, good, bad, n: int, must_differ: bool) -> list[tuple]:
    for _ in range(200):
        args = fn.inputs(rng)
        if not must_differ or good(*args) != bad(*args):
            return [args] + [fn.inputs(rng) for _ in range(n - 1)]
    raise RuntimeError(f"no input exposes the mutation in {fn.name}; this is a generator bug")


def _call(fn: Fn, args: tuple) -> str:
    return f"{fn.name}({', '.join(repr(a) for a in args)})"


def generate_task(seed: int, index: int, split: str, cfg: ToyConfig) -> Task:
    """One task, fully determined by (seed, index, split, cfg)."""
    rng = random.Random(f"toy:{split}:{seed}:{index}")
    names = NamePool(rng, split)
    pkg = names(2)  # two words: never shadows a stdlib module
    modules = [names(1) for _ in range(cfg.modules)]
    kinds = [k for k in cfg.mutation_kinds if k in MUTATION_KINDS]
    if not kinds:
        raise InputError(f"mutation_kinds: none of {cfg.mutation_kinds} is known; choose from {MUTATION_KINDS}")

    # The buggy leaf and its mutation.
    while True:
        buggy = leaf(rng.choice(cfg.shapes), names(2), rng)
        options = [m for m in buggy.mutations if m.kind in kinds]
        if options:
            mut: Mutation = rng.choice(options)
            break
    # The call chain: chain[0] is what the issue names, chain[-1] is the buggy leaf; each hop lives in another module.
    chain = [buggy]
    for _ in range(cfg.hops):
        chain.insert(0, wrapper(names(2), chain[0], rng))
    placed: dict[str, list[Fn]] = {m: [] for m in modules}
    home = {}
    mod_order = rng.sample(modules, len(modules))
    for i, fn in enumerate(reversed(chain)):
        mod = mod_order[i % len(modules)]
        placed[mod].append(fn)
        home[fn.name] = mod
    for mod in modules:  # distractors: more leaves of the same shapes, so there are several plausible lines
        while len(placed[mod]) < cfg.functions_per_module:
            fn = leaf(rng.choice(cfg.shapes), names(2), rng)
            placed[mod].append(fn)
            home[fn.name] = mod
        rng.shuffle(placed[mod])

    # Behaviour along the chain, correct and buggy.
    good, bad = {buggy.name: buggy.impl}, {buggy.name: mut.impl}
    for fn in reversed(chain[:-1]):
        good[fn.name], bad[fn.name] = fn.impl, rewrap(fn, bad[fn.callee])

    def module_source(mod: str, mutated: bool) -> str:
        imports = sorted({(home[f.callee], f.callee) for f in placed[mod] if f.callee})
        out = [f"from {pkg}.{m} import {n}\n" for m, n in imports]
        out += ["\n\n" if out else ""]
        bodies = [f.source(f.mutated_body(mut) if (mutated and f is buggy) else None) for f in placed[mod]]
        return "".join(out).lstrip("\n") + "\n\n".join(bodies)

    direct = rng.random() < cfg.direct_test_prob
    files, fixed, f2p, p2p, statement_case = {f"{pkg}/__init__.py": ""}, {}, [], [], None
    for mod in modules:
        path = f"{pkg}/{mod}.py"
        files[path], fixed[path] = module_source(mod, True), module_source(mod, False)
        tests = []
        for fn in placed[mod]:
            in_chain = fn.name in bad
            if fn is buggy and not direct and cfg.hops > 0:
                continue  # the buggy function's own test is hidden: the agent must follow the calls
            cases = _gen_inputs(rng, fn, good.get(fn.name, fn.impl), bad.get(fn.name, fn.impl), 2, in_chain)
            asserts = [f"    assert {_call(fn, a)} == {good.get(fn.name, fn.impl)(*a)!r}" for a in cases]
            tests.append(f"def test_{fn.name}():\n" + "\n".join(asserts) + "\n")
            (f2p if in_chain else p2p).append(f"tests/test_{mod}.py::test_{fn.name}")
            if fn is chain[0]:
                statement_case = (fn, cases[0])
        names_here = ", ".join(f.name for f in placed[mod] if not (f is buggy and not direct and cfg.hops > 0))
        header = f"from {pkg}.{mod} import {names_here}\n\n\n" if names_here else ""
        files[f"tests/test_{mod}.py"] = header + "\n\n".join(tests)

    entry, args = statement_case
    got, want = bad[entry.name](*args), good[entry.name](*args)
    phrasing = rng.choice([
        "`{c}` returns {got!r}, but it should return {want!r}.",
        "`{c}` gives {got!r} instead of {want!r}.",
        "Calling `{c}` returns {got!r}; expected {want!r}.",
    ])
    statement = phrasing.format(c=_call(entry, args), got=got, want=want) + f" (package `{pkg}`)"
    bug_path = f"{pkg}/{home[buggy.name]}.py"
    gold = "".join(difflib.unified_diff(
        files[bug_path].splitlines(keepends=True), fixed[bug_path].splitlines(keepends=True),
        fromfile=f"a/{bug_path}", tofile=f"b/{bug_path}"))
    return Task(
        task_id=f"toy-{split}-s{seed}-{index:05d}",
        suite="toy",
        split=split,
        problem_statement=statement,
        repo=InlineRepo(files=files),
        FAIL_TO_PASS=sorted(f2p),
        PASS_TO_PASS=sorted(p2p),
        test_files=sorted(p for p in files if p.startswith("tests/")),
        gold_patch=gold,
        meta={"package": pkg, "mutation": mut.kind, "shape": buggy.shape, "hops": cfg.hops,
              "chain": [f.name for f in chain], "buggy_file": bug_path, "direct_test": direct or cfg.hops == 0},
    )


def generate(split: str, n: int, seed: int, cfg: ToyConfig | None = None) -> list[Task]:
    if split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}")
    cfg = cfg or ToyConfig()
    return [generate_task(seed, i, split, cfg) for i in range(n)]
