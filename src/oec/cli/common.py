"""What every `oec` verb shares: the errors a user can fix, shown as one line (exit 2) rather than a traceback."""

from __future__ import annotations

import typer
from pydantic import ValidationError

from oec.rollout.policies import PolicySpecError
from oec.env.sandbox.bwrap import SandboxUnavailable
from oec.tasks.io import InputError, describe

USER_ERRORS = (InputError, PolicySpecError, SandboxUnavailable, ValueError)


def fail(e: Exception) -> None:
    # a pydantic error's str() is a multi-line dump; the user gets one line naming each field
    message = f"invalid value: {describe(e)}" if isinstance(e, ValidationError) else str(e)
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)
