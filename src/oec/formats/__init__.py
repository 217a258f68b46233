"""Format specs -> formats: `text`, `toolcalls`, `miniswe`, with options as `text?window=4`."""

from __future__ import annotations

from pydantic import ValidationError

from oec.core.errors import InputError, describe
from oec.formats.base import FormatConfig
from oec.formats.miniswe import MiniSweFormat
from oec.formats.text import TextFormat, text_reply
from oec.formats.toolcalls import ToolCallFormat, tool_call

FORMATS = {"text": TextFormat, "toolcalls": ToolCallFormat, "miniswe": MiniSweFormat}


def parse_spec_options(spec: str) -> tuple[str, dict[str, str]]:
    """`name?a=1&b=2` -> ("name", {"a": "1", "b": "2"}); shared by policy and format specs."""
    name, _, query = spec.partition("?")
    return name, dict(kv.split("=", 1) if "=" in kv else (kv, "") for kv in query.split("&") if kv)


def make_format(spec: str = "text"):
    name, options = parse_spec_options(spec)
    if name not in FORMATS:
        raise InputError(f"format {spec!r}: unknown format {name!r}; choose from {sorted(FORMATS)}")
    try:
        return FORMATS[name](FormatConfig(**options))
    except ValidationError as e:
        raise InputError(f"format {spec!r}: {describe(e)} (options: {sorted(FormatConfig.model_fields)})") from None


__all__ = ["FORMATS", "FormatConfig", "MiniSweFormat", "TextFormat", "ToolCallFormat", "make_format",
           "parse_spec_options", "text_reply", "tool_call"]
