"""Procedural bugs for real Python files, in the spirit of SWE-smith's procedural modifications.

`ast` finds the sites; the change is made in the source text itself (an operator token, a constant, a statement's
lines), not by re-printing the function with `ast.unparse`, so comments and formatting survive and the gold
(reverse) patch is a one- or two-line diff, like the toy suite's (suites/templates.py has the same kinds).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

KINDS = ("operator_swap", "comparison_flip", "boolean_swap", "negated_condition", "off_by_one", "wrong_constant",
         "swapped_args", "removed_branch", "dropped_return")

BINOPS = {ast.Add: ("+", "-"), ast.Sub: ("-", "+"), ast.Mult: ("*", "/"), ast.Div: ("/", "*"),
          ast.FloorDiv: ("//", "/"), ast.Mod: ("%", "//"), ast.Pow: ("**", "*"), ast.BitAnd: ("&", "|"),
          ast.BitOr: ("|", "&"), ast.BitXor: ("^", "&"), ast.LShift: ("<<", ">>"), ast.RShift: (">>", "<<")}
CMPOPS = {ast.Lt: ("<", "<="), ast.LtE: ("<=", "<"), ast.Gt: (">", ">="), ast.GtE: (">=", ">"),
          ast.Eq: ("==", "!="), ast.NotEq: ("!=", "=="), ast.In: ("in", "not in"), ast.NotIn: ("not in", "in"),
          ast.Is: ("is", "is not"), ast.IsNot: ("is not", "is")}


@dataclass(frozen=True)
class Mutant:
    path: str
    function: str  # qualified name, e.g. "Parser.parse"
    kind: str
    line: int
    source: str  # the whole mutated file


class _Source:
    """Offsets in a file's text from ast positions (ast columns count UTF-8 bytes)."""

    def __init__(self, text: str):
        self.text = text
        self.lines = text.splitlines(keepends=True)
        self.starts = [0]
        for ln in self.lines:
            self.starts.append(self.starts[-1] + len(ln))

    def offset(self, line: int, col_bytes: int) -> int:
        return self.starts[line - 1] + len(self.lines[line - 1].encode()[:col_bytes].decode(errors="replace"))

    def span(self, node: ast.AST) -> tuple[int, int]:
        return self.offset(node.lineno, node.col_offset), self.offset(node.end_lineno, node.end_col_offset)

    def replace(self, a: int, b: int, new: str) -> str:
        return self.text[:a] + new + self.text[b:]


def _functions(tree: ast.AST, prefix: str = ""):
    """(qualified name, node) of every function and method, nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
            yield from _functions(node, prefix + node.name + ".")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, prefix + node.name + ".")


def _own_nodes(fn: ast.AST):
    """Nodes of FN's body, not of the functions and classes defined inside it (those are mutated on their own)."""
    stack = list(fn.body)
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                stack.append(child)


def _in_gap(src: _Source, a: int, b: int, token: str, new: str) -> str | None:
    """Replace the operator TOKEN found between offsets A and B (between two operands)."""
    gap = src.text[a:b]
    i = gap.find(token)
    if i < 0 or token == "in" and "not" in gap or token == "is" and "not" in gap[i:]:
        return None
    return src.replace(a + i, a + i + len(token), new)


def _block_of(fn: ast.AST, stmt: ast.stmt) -> list[ast.stmt] | None:
    for node in ast.walk(fn):
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)  # statement lists are only ever under these three names
            if isinstance(block, list) and stmt in block:
                return block
    return None


def _drop_lines(src: _Source, stmt: ast.stmt, block: list[ast.stmt]) -> str | None:
    """Remove STMT's lines; put `pass` there if it was alone in its block. None if it shares a line."""
    start, end = stmt.lineno, stmt.end_lineno
    first = src.lines[start - 1]
    indent = first[: len(first) - len(first.lstrip())]
    if src.offset(start, stmt.col_offset) != src.starts[start - 1] + len(indent):
        return None  # `if x: return y` on one line: not a line-level change
    rest = src.text[src.offset(end, stmt.end_col_offset):src.starts[end]].strip()
    if rest and not rest.startswith("#"):
        return None
    filler = f"{indent}pass\n" if len(block) == 1 else ""
    return src.text[: src.starts[start - 1]] + filler + src.text[src.starts[end]:]


def _sites(src: _Source, fn: ast.AST):
    """(kind, line, mutated file text) for each mutation site of FN."""
    for node in _own_nodes(fn):
        line = getattr(node, "lineno", fn.lineno)
        if isinstance(node, ast.BinOp) and type(node.op) in BINOPS:
            old, new = BINOPS[type(node.op)]
            yield "operator_swap", line, _in_gap(src, src.span(node.left)[1], src.span(node.right)[0], old, new)
        elif isinstance(node, ast.Compare):
            left = node.left
            for op, right in zip(node.ops, node.comparators):
                old, new = CMPOPS[type(op)]
                yield "comparison_flip", line, _in_gap(src, src.span(left)[1], src.span(right)[0], old, new)
                left = right
        elif isinstance(node, ast.BoolOp) and len(node.values) == 2:
            old, new = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
            yield "boolean_swap", line, _in_gap(src, src.span(node.values[0])[1], src.span(node.values[1])[0],
                                                f" {old} ", f" {new} ")
        elif isinstance(node, (ast.If, ast.While)) and not isinstance(node.test, ast.UnaryOp):
            a, b = src.span(node.test)
            yield "negated_condition", line, src.replace(a, b, f"not ({src.text[a:b]})")
        elif isinstance(node, ast.Constant) and type(node.value) is int and node.value < 10**6:
            a, b = src.span(node)
            if src.text[a:b].isdigit():
                delta = 1 if node.value == 0 else -1
                yield "off_by_one", line, src.replace(a, b, str(node.value + delta))
        elif isinstance(node, ast.Constant) and type(node.value) is bool:
            a, b = src.span(node)
            yield "wrong_constant", line, src.replace(a, b, str(not node.value))
        elif isinstance(node, ast.Call) and len(node.args) >= 2 and not node.keywords and \
                not any(isinstance(x, ast.Starred) for x in node.args[:2]):
            (a1, b1), (a2, b2) = src.span(node.args[0]), src.span(node.args[1])
            first, second = src.text[a1:b1], src.text[a2:b2]
            if first != second:
                yield "swapped_args", line, src.text[:a1] + second + src.text[b1:a2] + first + src.text[b2:]
        if isinstance(node, ast.If) and not node.orelse:  # an `if` is also a negated_condition site
            block = _block_of(fn, node)
            if block and len(block) > 1:
                yield "removed_branch", line, _drop_lines(src, node, block)
        elif isinstance(node, ast.Return) and node.value is not None:
            block = _block_of(fn, node)
            if block is not None and block is not fn.body:  # an early return, inside an if/for/with/try
                yield "dropped_return", line, _drop_lines(src, node, block)


def mutants(path: str, text: str, kinds: tuple[str, ...] = KINDS) -> list[Mutant]:
    """Every single-site mutant of the file at PATH (text TEXT) that still parses, in file order."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    src = _Source(text)
    out, seen = [], {text}
    for name, fn in _functions(tree):
        for kind, line, new in _sites(src, fn):
            if kind not in kinds or new is None or new in seen:
                continue
            try:
                ast.parse(new)
            except (SyntaxError, ValueError):
                continue
            seen.add(new)
            out.append(Mutant(path, name, kind, line, new))
    return out
