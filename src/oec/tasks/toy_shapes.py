"""Function shapes for the toy suite, each with its mutation sites.

Every shape knows its correct behaviour as a Python callable and, for each mutation, the mutated line and the
mutated behaviour, so the generator can pick test inputs that expose the bug without running any code. Shapes are
the simplest difficulty knob (in an early prototype one-liners were mostly solved, multi-line functions rarely).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

from oec.core.errors import InputError

MUTATION_KINDS = (
    "operator_swap",
    "comparison_flip",
    "off_by_one",
    "wrong_constant",
    "swapped_args",
    "negated_condition",
    "removed_branch",
)


@dataclass(frozen=True)
class Mutation:
    kind: str
    line: int  # index into Fn.body
    new: list[str]  # replacement lines for body[line] (empty: the line and its block are removed)
    span: int = 1  # how many body lines the mutation replaces
    impl: Callable = None  # behaviour after the mutation


@dataclass(frozen=True)
class Fn:
    name: str
    params: tuple[str, ...]
    body: list[str]  # lines without the 4-space function indent
    impl: Callable
    inputs: Callable[[random.Random], tuple]
    shape: str
    mutations: list[Mutation] = field(default_factory=list)
    callee: str | None = None

    def source(self, body: list[str] | None = None) -> str:
        lines = [f"def {self.name}({', '.join(self.params)}):"] + ["    " + b for b in (body or self.body)]
        return "\n".join(lines) + "\n"

    def mutated_body(self, m: Mutation) -> list[str]:
        return self.body[: m.line] + m.new + self.body[m.line + m.span :]


def _ints(rng: random.Random, n: int, lo: int = -9, hi: int = 9) -> tuple:
    return tuple(rng.randint(lo, hi) for _ in range(n))


def _lst(rng: random.Random, lo: int = 0, hi: int = 9) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(rng.randint(3, 6))]


def _clamp_in(rng):
    lo = rng.randint(-5, 3)
    return (rng.randint(-9, 12), lo, lo + rng.randint(1, 6))


def leaf(shape: str, name: str, rng: random.Random) -> Fn:
    """A function that calls nothing. K and C are random constants, so fixing a constant means reading the tests."""
    k, c = rng.randint(2, 9), rng.randint(1, 9)
    M = Mutation
    if shape == "add":
        return Fn(name, ("a", "b"), ["return a + b"], lambda a, b: a + b, lambda r: _ints(r, 2), shape,
                  [M("operator_swap", 0, ["return a - b"], impl=lambda a, b: a - b)])
    if shape == "diff":
        return Fn(name, ("a", "b"), ["return a - b"], lambda a, b: a - b, lambda r: _ints(r, 2), shape,
                  [M("swapped_args", 0, ["return b - a"], impl=lambda a, b: b - a),
                   M("operator_swap", 0, ["return a + b"], impl=lambda a, b: a + b)])
    if shape == "affine":
        return Fn(name, ("a",), [f"return a * {k} + {c}"], lambda a: a * k + c, lambda r: _ints(r, 1), shape,
                  [M("wrong_constant", 0, [f"return a * {k + 1} + {c}"], impl=lambda a: a * (k + 1) + c),
                   M("operator_swap", 0, [f"return a * {k} - {c}"], impl=lambda a: a * k - c)])
    if shape == "larger":
        return Fn(name, ("a", "b"), ["return a if a > b else b"], max, lambda r: _ints(r, 2), shape,
                  [M("comparison_flip", 0, ["return a if a < b else b"], impl=min)])
    if shape == "head_sum":
        return Fn(name, ("xs", "n"), ["return sum(xs[:n])"], lambda xs, n: sum(xs[:n]),
                  lambda r: (_lst(r), r.randint(1, 3)), shape,
                  [M("off_by_one", 0, ["return sum(xs[:n + 1])"], impl=lambda xs, n: sum(xs[: n + 1])),
                   M("off_by_one", 0, ["return sum(xs[1:n])"], impl=lambda xs, n: sum(xs[1:n]))])
    if shape == "span":
        return Fn(name, ("lo", "hi"), ["return hi - lo + 1"], lambda lo, hi: hi - lo + 1,
                  lambda r: (r.randint(-5, 5), r.randint(6, 15)), shape,
                  [M("off_by_one", 0, ["return hi - lo"], impl=lambda lo, hi: hi - lo),
                   M("swapped_args", 0, ["return lo - hi + 1"], impl=lambda lo, hi: lo - hi + 1)])
    if shape == "clamp":
        body = ["if x < lo:", "    return lo", "if x > hi:", "    return hi", "return x"]
        ok = lambda x, lo, hi: min(max(x, lo), hi)  # noqa: E731
        return Fn(name, ("x", "lo", "hi"), body, ok, _clamp_in, shape,
                  [M("comparison_flip", 2, ["if x < hi:"],
                     impl=lambda x, lo, hi: lo if x < lo else (hi if x < hi else x)),
                   M("removed_branch", 2, [], span=2, impl=lambda x, lo, hi: max(x, lo)),
                   M("swapped_args", 3, ["    return lo"], impl=lambda x, lo, hi: lo if x < lo or x > hi else x)])
    if shape == "count_above":
        body = ["n = 0", "for v in xs:", "    if v > t:", "        n += 1", "return n"]
        ok = lambda xs, t: sum(1 for v in xs if v > t)  # noqa: E731
        return Fn(name, ("xs", "t"), body, ok, lambda r: (_lst(r), r.randint(2, 6)), shape,
                  [M("negated_condition", 2, ["    if not v > t:"], impl=lambda xs, t: sum(1 for v in xs if not v > t)),
                   M("off_by_one", 2, ["    if v >= t:"], impl=lambda xs, t: sum(1 for v in xs if v >= t)),
                   M("wrong_constant", 0, ["n = 1"], impl=lambda xs, t: 1 + sum(1 for v in xs if v > t))])
    if shape == "weighted":
        body = ["total = 0", "for v in xs:", f"    total += v * {k}", "return total"]
        return Fn(name, ("xs",), body, lambda xs: k * sum(xs), lambda r: (_lst(r, 1, 9),), shape,
                  [M("operator_swap", 2, [f"    total -= v * {k}"], impl=lambda xs: -k * sum(xs)),
                   M("wrong_constant", 0, ["total = 1"], impl=lambda xs: 1 + k * sum(xs))])
    if shape == "sign":
        body = ["if x < 0:", "    return -1", "if x == 0:", "    return 0", "return 1"]
        ok = lambda x: (x > 0) - (x < 0)  # noqa: E731
        return Fn(name, ("x",), body, ok, lambda r: (r.choice([r.randint(-9, -1), 0, r.randint(1, 9)]),), shape,
                  [M("negated_condition", 0, ["if not x < 0:"], impl=lambda x: -1 if x >= 0 else (0 if x == 0 else 1)),
                   M("wrong_constant", 3, ["    return 1"], impl=lambda x: -1 if x < 0 else 1)])
    return unseen_leaf(shape, name, rng, k, c)


def unseen_leaf(shape: str, name: str, rng: random.Random, k: int, c: int) -> Fn:
    """The shapes no default task set holds (UNSEEN_SHAPES): held-out tasks of bug templates a student trained on the
    defaults never saw, to tell generalisation from copying a known template. Asked for by name only."""
    M = Mutation
    if shape == "product":
        return Fn(name, ("a", "b"), ["return a * b"], lambda a, b: a * b, lambda r: _ints(r, 2, 2, 9), shape,
                  [M("operator_swap", 0, ["return a + b"], impl=lambda a, b: a + b)])
    if shape == "tail_sum":
        return Fn(name, ("xs", "n"), ["return sum(xs[-n:])"], lambda xs, n: sum(xs[-n:]),
                  lambda r: (_lst(r, 1, 9), r.randint(1, 3)), shape,
                  [M("off_by_one", 0, ["return sum(xs[-n - 1:])"], impl=lambda xs, n: sum(xs[-n - 1:])),
                   M("wrong_constant", 0, ["return sum(xs[-n:]) + 1"], impl=lambda xs, n: sum(xs[-n:]) + 1)])
    if shape == "square_plus":
        body = ["y = a * a", f"return y + {k} * a"]
        return Fn(name, ("a",), body, lambda a: a * a + k * a, lambda r: _ints(r, 1, 1, 9), shape,
                  [M("wrong_constant", 1, [f"return y + {k + 1} * a"], impl=lambda a: a * a + (k + 1) * a),
                   M("operator_swap", 1, [f"return y - {k} * a"], impl=lambda a: a * a - k * a)])
    if shape == "cap":
        body = ["if x > hi:", "    x = hi", f"return x * {k}"]
        return Fn(name, ("x", "hi"), body, lambda x, hi: min(x, hi) * k, lambda r: (r.randint(-5, 15), r.randint(2, 8)),
                  shape, [M("comparison_flip", 0, ["if x < hi:"], impl=lambda x, hi: (hi if x < hi else x) * k),
                          M("removed_branch", 0, [], span=2, impl=lambda x, hi: x * k)])
    if shape == "count_even":
        body = ["n = 0", "for v in xs:", "    if v % 2 == 0:", "        n += 1", "return n"]
        ok = lambda xs: sum(1 for v in xs if v % 2 == 0)  # noqa: E731
        return Fn(name, ("xs",), body, ok, lambda r: (_lst(r),), shape,
                  [M("negated_condition", 2, ["    if v % 2 != 0:"], impl=lambda xs: sum(1 for v in xs if v % 2)),
                   M("wrong_constant", 0, ["n = 1"], impl=lambda xs: 1 + ok(xs))])
    raise InputError(f"unknown function shape {shape!r}; known: {', '.join(LEAF_SHAPES + UNSEEN_SHAPES)}")


LEAF_SHAPES = ("add", "diff", "affine", "larger", "head_sum", "span", "clamp", "count_above", "weighted", "sign")
UNSEEN_SHAPES = ("product", "tail_sum", "square_plus", "cap", "count_even")
ONE_LINERS = ("add", "diff", "affine", "larger", "head_sum", "span")


def wrapper(name: str, callee: Fn, rng: random.Random) -> Fn:
    """A function that calls CALLEE (usually in another module) and transforms its result: one hop of localisation."""
    k = rng.randint(2, 9)
    args = ", ".join(callee.params)
    f = callee.impl
    kind = rng.choice(["plus", "times", "minus"])
    line = {"plus": f"return {callee.name}({args}) + {k}", "times": f"return {k} * {callee.name}({args})",
            "minus": f"return {callee.name}({args}) - {k}"}[kind]
    impl = {"plus": lambda *a: f(*a) + k, "times": lambda *a: k * f(*a), "minus": lambda *a: f(*a) - k}[kind]
    return Fn(name, callee.params, [line], impl, callee.inputs, f"wrap_{kind}", [], callee=callee.name)


def rewrap(fn: Fn, inner_impl: Callable) -> Callable:
    """FN's behaviour when its callee behaves like INNER_IMPL (to follow a bug up the call chain)."""
    kind = fn.shape.removeprefix("wrap_")
    k = int(fn.body[0].split()[-1]) if kind != "times" else int(fn.body[0].split()[1])
    return {"plus": lambda *a: inner_impl(*a) + k, "times": lambda *a: k * inner_impl(*a),
            "minus": lambda *a: inner_impl(*a) - k}[kind]
