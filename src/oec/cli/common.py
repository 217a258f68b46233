"""What every `oec` verb shares: the errors a user can fix, shown as one line (exit 2) rather than a traceback."""

from __future__ import annotations

import functools
from typing import Callable

import typer
from pydantic import ValidationError

from oec.core.errors import USER_ERRORS, describe

__all__ = ["USER_ERRORS", "fail", "user_errors"]


def fail(e: Exception) -> None:
    # a pydantic error's str() is a multi-line dump; the user gets one line naming each field
    message = f"invalid value: {describe(e)}" if isinstance(e, ValidationError) else str(e)
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def user_errors(verb: Callable) -> Callable:
    """VERB with the one way oec reports a mistake the user can fix: an error of USER_ERRORS, raised anywhere in
    it, is one red line and exit 2 (the signature is kept, so typer still reads the options from it)."""

    @functools.wraps(verb)
    def run(*args, **kwargs):
        try:
            return verb(*args, **kwargs)
        except USER_ERRORS as e:
            fail(e)

    return run
