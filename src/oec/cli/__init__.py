"""The `oec` command line."""

from oec.cli.main import app

__all__ = ["app"]
