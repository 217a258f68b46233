"""Policy specs -> policies.

    scripted:expert | scripted:noisy          privileged scripted policies (options: scripted:noisy?error_rate=0.5)
    local:PATH                                a transformers model directory in this process (local:models/tiny?temperature=0;
                                              engine=hf: transformers' generate instead of the KV-reusing engine)
    openai:MODEL@BASE_URL                     an OpenAI-compatible server (openai:gpt-4.1@https://api.example.com/v1?price_in=2)

Each policy renders with its own Format (`text` or `toolcalls`, with options such as `text?window=4`).
"""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from oec.formats import make_format, parse_spec_options
from oec.rollout.policies.noisy import NoisyConfig, NoisyStudent
from oec.rollout.policies.scripted import ExpertConfig, ScriptedExpert
from oec.core.protocols import Policy
from oec.tasks.io import describe

SCRIPTED = {"expert": (ScriptedExpert, ExpertConfig), "noisy": (NoisyStudent, NoisyConfig)}


class PolicySpecError(ValueError):
    pass


def _config(spec: str, cls: type[BaseModel], options: dict) -> BaseModel:
    try:
        return cls(**options)
    except ValidationError as e:
        raise PolicySpecError(f"policy {spec!r}: {describe(e)} (options: {sorted(cls.model_fields)})") from None


def local_spec(model, temperature: float, options: str | None = None) -> str:
    """The `local:` spec the runners give a student checkpoint: their temperature, then the config's options."""
    return f"local:{model}?temperature={temperature}" + (f"&{options}" if options else "")


def check_local_options(options: str | None) -> str | None:
    """Extra `local:` options given apart from the spec (a config's `student_options`), checked when the config is
    read rather than when the first episode starts. The runners set `temperature` themselves (sampled rollouts,
    greedy evaluations), so it is refused here: a later option would silently win over theirs."""
    if not options:
        return options
    from oec.rollout.policies.local import LocalConfig

    _, parsed = parse_spec_options(f"local?{options}")
    if "temperature" in parsed:
        raise PolicySpecError("temperature is set by the runner (student_temperature for rollouts; evaluations are "
                              "greedy); leave it out of student_options")
    _config(f"local:MODEL?{options}", LocalConfig, parsed)
    return options


def make_policy(spec: str, format: str = "text") -> Policy:
    """Build a policy from its command-line spec, e.g. `scripted:noisy?error_rate=0.4`, rendering with FORMAT."""
    kind, _, rest = spec.partition(":")
    target, options = parse_spec_options(rest)
    try:
        fmt = make_format(format)
    except ValueError as e:
        raise PolicySpecError(str(e)) from None
    if kind == "scripted":
        if target not in SCRIPTED:
            raise PolicySpecError(f"policy {spec!r}: unknown scripted policy {target!r}; choose from {sorted(SCRIPTED)}")
        cls, config_cls = SCRIPTED[target]
        return cls(spec, _config(spec, config_cls, options), fmt)
    if kind == "local":
        # torch is imported only when a local model is used
        from oec.rollout.policies.engine import KVPolicy
        from oec.rollout.policies.local import LocalConfig, LocalPolicy

        if not target:
            raise PolicySpecError(f"policy {spec!r}: give the model directory, e.g. local:models/tiny")
        config = _config(spec, LocalConfig, options)
        try:
            return (LocalPolicy if config.engine == "hf" else KVPolicy)(spec, target, config, fmt)
        except ValueError as e:
            raise PolicySpecError(str(e)) from None
    if kind == "openai":
        from oec.rollout.policies.openai_api import OpenAIConfig, OpenAIPolicy

        model, at, url = target.rpartition("@")
        if not at or not model or not url.startswith(("http://", "https://")):
            raise PolicySpecError(f"policy {spec!r}: expected openai:MODEL@BASE_URL, e.g. "
                                  "openai:Qwen/Qwen2.5-Coder-7B-Instruct@http://localhost:8000/v1")
        return OpenAIPolicy(spec, model, url, _config(spec, OpenAIConfig, options), fmt)
    raise PolicySpecError(
        f"policy {spec!r}: unknown kind {kind!r}; use scripted:expert, scripted:noisy, local:PATH or openai:MODEL@URL"
    )
