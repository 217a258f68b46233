"""Policy specs -> policies. `scripted:expert`, `scripted:noisy`; options as `scripted:noisy?error_rate=0.5`."""

from __future__ import annotations

from pydantic import ValidationError

from oec.policies.noisy import NoisyConfig, NoisyStudent
from oec.policies.scripted import ExpertConfig, ScriptedExpert
from oec.protocols import Policy

SCRIPTED = {"expert": (ScriptedExpert, ExpertConfig), "noisy": (NoisyStudent, NoisyConfig)}


class PolicySpecError(ValueError):
    pass


def make_policy(spec: str) -> Policy:
    """Build a policy from its command-line spec, e.g. `scripted:noisy?error_rate=0.4`."""
    kind, _, rest = spec.partition(":")
    name, _, query = rest.partition("?")
    options = dict(kv.split("=", 1) if "=" in kv else (kv, "") for kv in query.split("&") if kv)
    if kind == "scripted":
        if name not in SCRIPTED:
            raise PolicySpecError(f"policy {spec!r}: unknown scripted policy {name!r}; choose from {sorted(SCRIPTED)}")
        cls, config_cls = SCRIPTED[name]
        try:
            config = config_cls(**options)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
            raise PolicySpecError(f"policy {spec!r}: {problems} (options: {sorted(config_cls.model_fields)})") from None
        return cls(spec, config)
    raise PolicySpecError(
        f"policy {spec!r}: unknown kind {kind!r}. Use scripted:expert or scripted:noisy "
        "(local:PATH and openai:MODEL@URL arrive with the LM policies)."
    )
