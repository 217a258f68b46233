"""One config path: a YAML file, then command-line options, then `a.b=value` overrides, merged once and validated.

Every config model forbids unknown keys, so a typo is an error that names the key instead of a silently ignored one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from oec.core.errors import InputError, describe

M = TypeVar("M", bound=BaseModel)


class _Loader(yaml.SafeLoader):
    """YAML 1.1 (PyYAML) reads `1e-4` as a string; as YAML 1.2 and every user reads it, it is a float."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                              re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                              list("-+0123456789"))


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)


def _set(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = tree.setdefault(key, {})
        if not isinstance(node, dict):
            raise InputError(f"override {dotted!r}: {key!r} is not a section")
        tree = node
    tree[leaf] = value


def parse_overrides(overrides: list[str]) -> dict:
    tree: dict = {}
    for item in overrides:
        key, eq, raw = item.partition("=")
        if not eq or not key:
            raise InputError(f"override {item!r}: expected KEY=VALUE, e.g. loop.step_limit=20")
        _set(tree, key.strip(), load_yaml(raw) if raw else "")
    return tree


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(model: type[M], path: str | Path | None = None, options: dict | None = None,
                overrides: list[str] | None = None) -> M:
    data: dict = {}
    where = "command line"
    if path:
        path = Path(path)
        try:
            data = load_yaml(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise InputError(f"{path}: cannot read config: {e}") from None
        if not isinstance(data, dict):
            raise InputError(f"{path}: a config file must be a mapping of keys to values")
        where = f"{path} + command line"
    data = merge(data, {k: v for k, v in (options or {}).items() if v is not None})
    data = merge(data, parse_overrides(overrides or []))
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise InputError(f"invalid config ({where}): {describe(e)}") from None


def options_of(model: type[M], exclude: set[str], name: str) -> type[BaseModel]:
    """MODEL's fields but EXCLUDE, as a model of its own (unknown keys refused): the part of a config that an outer
    config may set for it, each field still declared once, on MODEL. MODEL's own cross-field checks do not run on
    it: build the whole config (with `given`) to check them."""
    fields = {k: (f.annotation, f) for k, f in model.model_fields.items() if k not in exclude}
    return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)


def given(options: BaseModel) -> dict:
    """The keys OPTIONS were given, nested ones too: the defaults are left to the config they are merged into."""
    return options.model_dump(exclude_unset=True)
