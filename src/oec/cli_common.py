"""What every `oec` verb shares: the errors a user can fix, shown as one line (exit 2) rather than a traceback."""

from __future__ import annotations

import typer

from oec.policies import PolicySpecError
from oec.sandbox.bwrap import SandboxUnavailable
from oec.tasks import InputError

USER_ERRORS = (InputError, PolicySpecError, SandboxUnavailable, ValueError)


def fail(e: Exception) -> None:
    typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)
