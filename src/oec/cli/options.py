"""Command-line options derived from the pydantic configs, so that each config field is declared once.

`@config_options(Model, "a", "b")` gives the command one option per named field of MODEL (`--a`, `--b`), its type
and help taken from the field and its default shown from the model. The command receives the options the user gave
as one dict, `options`, which goes to `load_config` with the YAML file and the KEY=VALUE overrides, so pydantic
validates all three the same way. An option left out is absent from the dict: the YAML's value or the model's default
stands.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

SCALARS = (str, int, float, bool)


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) is list and typing.get_args(annotation) in ((str,),)


def _scalar(annotation: Any) -> type:
    """The option type of a field: its scalar type (Literal choices and `X | None` reduce to it; a list of strings is
    one comma-separated string)."""
    if annotation in SCALARS:
        return annotation
    if _is_list(annotation):
        return str
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return type(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(inner) == 1:
            return _scalar(inner[0])
    raise TypeError(f"{annotation!r} has no command-line form; set it with KEY=VALUE or in the YAML")


def _help(field) -> str:
    text = field.description or ""
    origin = typing.get_origin(field.annotation)
    if origin is typing.Literal:
        text = f"{' | '.join(map(str, typing.get_args(field.annotation)))}{': ' + text if text else ''}"
    if _is_list(field.annotation):
        text += " (comma-separated)"
    if field.default is not PydanticUndefined and field.default is not None and field.default_factory is None:
        shown = ",".join(field.default) if _is_list(field.annotation) else field.default
        text += f" (default: {shown})"
    return text.strip()


def config_options(model: type[BaseModel], *names: str) -> Callable:
    """Add an option per field NAME of MODEL to the decorated command, passed to it as the dict `options`."""

    def wrap(command: Callable) -> Callable:
        signature = inspect.signature(command)
        own = [p for p in signature.parameters.values() if p.name != "options"]
        derived = []
        for name in names:
            field = model.model_fields[name]
            kind = _scalar(field.annotation)
            derived.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Optional[kind],
                                             default=typer.Option(None, help=_help(field))))

        lists = {n for n in names if _is_list(model.model_fields[n].annotation)}

        @functools.wraps(command)
        def run(**kwargs):
            given = {n: kwargs.pop(n) for n in names}
            options = {n: v.split(",") if n in lists else str(v) if isinstance(v, Path) else v
                       for n, v in given.items() if v is not None}
            return command(options=options, **kwargs)

        run.__signature__ = signature.replace(parameters=own + derived)
        return run

    return wrap
