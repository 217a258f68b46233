"""Every exception oec raises on purpose, in one place.

`UserError` and its subclasses are problems the user can fix (a file, a field, an option, a policy spec, a missing
tool): the CLI shows the message as one line and exits 2, so every message says where the problem is and how to fix
it. Anything else (a `ValueError` from a bug included) keeps its traceback.

The episode errors below them never reach the user as a crash: each ends one episode (or one record of an import)
with a status and its message, and the run goes on.
"""

from __future__ import annotations

from pydantic import ValidationError


class UserError(Exception):
    """Something the user can fix; the message says where and how."""


class InputError(UserError):
    """Bad user input (a file, a line, a field, an option); the message names it and says how to fix it."""


class PolicySpecError(UserError):
    """A policy spec (`scripted:...`, `local:...`, `openai:...`) that cannot be built."""


class SandboxUnavailable(UserError):
    """The sandbox cannot start on this machine (bubblewrap missing or user namespaces off); the message says why."""


# Per-episode and per-record errors: caught where they happen, recorded, never shown as a crash.


class FormatError(Exception):
    """The model's output could not be parsed; the message is shown to the model as its observation."""


class PolicyError(RuntimeError):
    """A policy could not produce an output (e.g. a non-retryable API error); the episode ends with status `error`."""


class MalformedReply(Exception):
    """A 200 answer that is not a chat completion (HTML, no choices, a null message, ...; seen from overloaded
    servers and proxies): treated like a 5xx, and the message says what was wrong."""


class DeadlineExceeded(Exception):
    """The call ran past its total deadline (a server that drips bytes): treated like a timeout."""


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the agent's command)."""


class MaterialiseError(RuntimeError):
    """A task's workspace could not be built; the message names the task and the reason."""


class ChangeTooLarge(Exception):
    """The workspace differs from the base in more files or bytes than a fix can; it is not verified."""


class ConversionError(Exception):
    """One record of another agent's trajectories cannot be turned into a trajectory; the message says why."""


class InstanceError(Exception):
    """One SWE-bench-style instance cannot be imported; the message says why."""


# What the CLI shows as one line. A pydantic ValidationError escaping to the CLI comes from a user's value
# (configs are validated where they are loaded), so it is shown with `describe` rather than as a dump.
USER_ERRORS = (UserError, ValidationError)


def describe(e: ValidationError) -> str:
    """A pydantic error as one line naming each field, and saying so when a key is unknown (a misspelling): the one
    way every config, record and option error is worded."""
    hint = {"extra_forbidden": " (unknown key: check its spelling)"}

    def one(err) -> str:
        # our validators' own messages name their fields; pydantic's "Value error, " prefix says nothing more
        msg = err["msg"].removeprefix("Value error, ") + hint.get(err["type"], "")
        return f"{'.'.join(map(str, err['loc']))}: {msg}" if err["loc"] else msg

    return "; ".join(one(err) for err in e.errors())
