"""The config of `oec experiment`: the suite, the arms, the warm start, and what every arm shares."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from oec.core.config import given, options_of
from oec.core.errors import describe
from oec.data.filter import FilterConfig
from oec.rollout.collect import CollectConfig
from oec.rollout.policies import check_local_options
from oec.tasks.toy import toy_config

Kind = Literal["bc", "on_policy", "oec", "oec_bc", "dagger"]


class SuiteConfig(BaseModel):
    """The toy suite's size and difficulty (`oec tasks generate` knobs), or task files."""

    model_config = ConfigDict(extra="forbid")
    train: int = Field(200, ge=1, description="train tasks (pools are collected on these)")
    heldout: int = Field(100, ge=1, description="held-out tasks every student is evaluated on")
    seed: int = 0
    preset: str | None = Field(None, description="named toy knobs (oec.tasks.toy.PRESETS: easy, multihop); "
                                                 "`knobs` override its values")
    knobs: dict[str, Any] = Field(default_factory=dict, description="toy generator knobs: hops, modules, ...")
    train_file: str | None = Field(None, description="use this tasks file instead of generating")
    heldout_file: str | None = None
    warm_seed: int | None = Field(None, description="generator seed of the warm-start tasks [seed + 2]; the pool's "
                                                    "are seed, the held-out ones seed + 1")
    warm_file: str | None = Field(None, description="the warm-start tasks file (needed with train_file when the "
                                                    "warm start trains)")

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: str | None) -> str | None:
        toy_config(v)  # an unknown name is a ValueError that lists the known presets
        return v


class ArmConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    kind: Kind
    switch: str = Field("uniform", description="oec / oec_bc: uniform | late[:A,B] | fixed:K | trigger (a model of "
                                             "the expert pool's states, fitted by the runner)")
    mask: Literal["expert", "all"] = Field("expert", description="all: the mask ablation (student turns trained too)")
    filters: bool = Field(True, description="false: the repetition/read-only filters off (the filter ablation)")


class WarmConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    trajectories: int = Field(40, ge=0, description="expert demonstrations the warm-start student is trained on; 0: "
                                                    "`student_model` already is the warm start (e.g. shipped)")
    train: dict[str, Any] = Field(default_factory=dict, description="trl overrides for the warm-start")


DEFAULT_ARMS = [ArmConfig(name="bc", kind="bc"), ArmConfig(name="on_policy", kind="on_policy"),
                ArmConfig(name="oec", kind="oec"), ArmConfig(name="oec_late", kind="oec", switch="late"),
                ArmConfig(name="oec_bc", kind="oec_bc"), ArmConfig(name="oec_all_turns", kind="oec", mask="all"),
                ArmConfig(name="oec_no_filter", kind="oec", filters=False), ArmConfig(name="dagger", kind="dagger")]


def not_owned(v: Any) -> Any:
    """`collect:` may not set what each collection sets itself (a clearer error than an unknown key)."""
    owned = sorted(OWNED & set(v)) if isinstance(v, dict) else []
    if owned:
        raise ValueError(f"{owned} are set for each collection; use the top-level keys (beta, samples, ...) instead")
    return v


def dump_given(v: BaseModel) -> dict:
    """Sub-configs are stored as given (defaults left out), so a stored config reads as its file did."""
    return given(v)


def check_collect(options: BaseModel) -> None:
    """The whole collection config these options make (its own cross-field checks), refused in one line now."""
    try:
        CollectConfig(tasks="-", out="-", **given(options))
    except ValidationError as e:
        raise ValueError(f"collect: {describe(e)}") from None


# DAgger's targets are the expert's labels and the expert's own turns, never the student's actions. So an episode
# that failed, ran out of steps or repeated itself still carries useful labels: they are exactly the corrections at
# the states where the student goes wrong. The verifier gate and the degeneracy filters (which judge the *acting*
# policy's behaviour) are therefore off by default; only episodes that ended in an error (no usable states) go.
FILTER_DEFAULTS = {"require_resolved": False, "max_repeat_consecutive": None, "max_repeat_total": None,
                   "max_read_only_run": None, "max_format_errors": None, "reject_empty_patch": False,
                   "reject_step_limit": False}
# Collection fields that each round (or arm) sets itself; giving them under `collect:` would silently fight it.
OWNED = {"tasks", "out", "mode", "beta", "student", "expert", "samples", "workers", "seed", "switch"}
# the rest of a collection's config, which a DAgger or experiment config may set for all its collections
CollectOptions = options_of(CollectConfig, OWNED, "CollectOptions")


class DaggerConfig(BaseModel):
    """DAgger rounds on one task set, from one warm-start student."""

    model_config = ConfigDict(extra="forbid")
    tasks: str = Field(description="train tasks file; each round samples from it")
    heldout: str | None = Field(None, description="tasks file for the per-round greedy evaluation (none: no eval)")
    student: str = Field(description="model directory of the warm-start student")
    expert: str = Field("scripted:expert", description="expert policy spec")
    out: str = Field(description="directory of the rounds")
    rounds: int = Field(3, ge=1)
    beta: float = Field(1.0, ge=0, le=1, description="beta at round 0 (1: the first round is the expert alone, as in "
                        "classic DAgger, giving the aggregate a base of demonstrations)")
    schedule: Literal["linear", "exponential"] = Field(
        "linear", description="linear: beta*(1 - r/rounds); exponential: beta*decay**r")
    decay: float = Field(0.5, gt=0, le=1, description="exponential schedule: factor per round")
    episodes_per_round: int | None = Field(None, ge=1, description="train tasks sampled per round (seeded) [all]")
    samples: int = Field(1, ge=1, description="episodes per sampled task")
    workers: int = Field(4, ge=1, description="concurrent episodes")
    seed: int = 0
    student_temperature: float = Field(0.7, ge=0, description="the student's sampling temperature in rollouts")
    student_options: str | None = Field(None, description="more `local:` options for rollouts and eval alike, "
                                        "e.g. max_new_tokens=160")
    eval_rounds: Literal["every", "last"] = Field(
        "every", description="every: each round's student is evaluated on heldout (the learning curve); last: only the "
        "final one (an experiment's DAgger arm, whose student is the last round's)")
    init_from: Literal["warm", "previous"] = Field(
        "warm", description="warm: every round trains the warm-start weights on the aggregate (DAgger; comparable "
        "with the other arms); previous: continue from the previous round's checkpoint")
    train: dict[str, Any] = Field(default_factory=dict, description="trl.SFTConfig overrides, e.g. max_steps")
    trained_tokens: int | None = Field(None, ge=1, description="token-matched: each round trains the steps that reach "
                                       "this many trained tokens on its aggregate, instead of train.max_steps")
    context_loss: float = Field(0.0, ge=0, description="`oec train` context_loss (auxiliary loss on the context)")
    filter: FilterConfig = Field(default_factory=FilterConfig, description="FilterConfig fields over the DAgger "
                                 "defaults (FILTER_DEFAULTS)")
    collect: CollectOptions = Field(default_factory=CollectOptions,
                                    description="other CollectConfig fields, e.g. loop.step_limit")

    # validated now, so that a typo fails before hours of rounds rather than at the first use
    _collect_not_owned = field_validator("collect", mode="before")(not_owned)
    _dump_given = field_serializer("filter", "collect")(dump_given)

    @field_validator("student_options")
    @classmethod
    def _check_options(cls, v: str | None) -> str | None:
        return check_local_options(v)

    @model_validator(mode="after")
    def _whole_configs(self) -> DaggerConfig:
        check_collect(self.collect)
        return self

    def filters(self) -> FilterConfig:
        """The rounds' filter: the DAgger defaults with what was given on top."""
        return FilterConfig(**{**FILTER_DEFAULTS, **given(self.filter)})

    def beta_at(self, r: int) -> float:
        """beta of round R: the probability that the expert acts at a turn."""
        if self.schedule == "linear":
            return self.beta * (1 - r / self.rounds)
        return self.beta * self.decay ** r


# what an experiment may set for its DAgger arms: the rest it sets itself, from its own keys
DaggerOptions = options_of(DaggerConfig, {"tasks", "heldout", "student", "expert", "out", "seed", "workers",
                                          "trained_tokens", "episodes_per_round", "student_temperature", "train",
                                          "student_options", "context_loss", "collect"}, "DaggerOptions")


def view_names(recheck_step_limit: int | None, unseen_heldout: int) -> list[str]:
    """The names of an experiment's second held-out evaluations (results_NAME.csv, claims_NAME.csv, eval-NAME/): each
    names its setting, so a changed setting is another evaluation, never mixed with the old one's episodes."""
    return ([f"steps{recheck_step_limit}"] if recheck_step_limit else []) + (
        [f"unseen{unseen_heldout}"] if unseen_heldout else [])


class ExperimentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    out: str | None = Field(None, description="run directory [runs/<name>]")
    suite: SuiteConfig = Field(default_factory=SuiteConfig)
    student: dict[str, Any] = Field(default_factory=dict, description="StudentConfig fields (`oec student init`)")
    student_model: str | None = Field(None, description="start from this model directory instead of a fresh one")
    expert: str = "scripted:expert"
    warm_start: WarmConfig = Field(default_factory=WarmConfig)
    arms: list[ArmConfig] = Field(default_factory=lambda: list(DEFAULT_ARMS))
    sizes: list[PositiveInt] = Field([50], min_length=1, description="trajectories per dataset (the scaling axis)")
    seeds: list[int] = Field([0], min_length=1)
    pool_samples: int = Field(2, ge=1, description="episodes per train task in the student and OEC pools "
                                                   "(the expert pool has one)")
    student_temperature: float = Field(0.7, ge=0, description="the student's sampling temperature in rollouts")
    student_options: str = Field("", description="more local: policy options, e.g. max_new_tokens=128")
    train: dict[str, Any] = Field(default_factory=dict, description="trl overrides, the same for every arm")
    context_loss: float = Field(0.0, ge=0, description="`oec train` context_loss for every training (copying)")
    dagger: DaggerOptions = Field(default_factory=DaggerOptions, description="DaggerConfig fields: rounds, beta, "
                                  "schedule...")
    collect: CollectOptions = Field(default_factory=CollectOptions, description="CollectConfig fields, e.g. "
                                    "loop.step_limit")
    workers: int = Field(8, ge=1)
    shift: bool = Field(True, description="covariate shift of the final students vs the expert (claim C1)")
    claims_size: int | None = Field(None, description="the dataset size the claims are made at [the largest of "
                                                      "sizes]; sizes are never pooled")
    trained_tokens: int | None = Field(None, ge=1, description="token-matched arms: each arm trains the steps that "
                                       "reach this many trained tokens on its own dataset instead of train.max_steps "
                                       "(unset: every arm trains the same steps)")
    # two more held-out evaluations of every student (the warm start's and each arm's), each with its own claims; they
    # only add evaluations, so either may be set on a finished experiment to re-evaluate its kept checkpoints
    recheck_step_limit: int | None = Field(None, ge=1, description="evaluate every student again at this step "
                                           "limit (results_stepsN.csv, claims_stepsN.csv): a claim that rests on "
                                           "collect.loop.step_limit shows here")
    unseen_heldout: int = Field(0, ge=0, description="a second held-out set of this many tasks from bug templates no "
                                "default task holds (the toy shapes UNSEEN_SHAPES), the suite's knobs otherwise "
                                "(results_unseen.csv, claims_unseen.csv): generalisation beside recall")
    recheck_arms: list[str] | None = Field(None, description="the arms those two evaluate again [every arm]; the warm "
                                           "start always")

    _collect_not_owned = field_validator("collect", mode="before")(not_owned)
    _dump_given = field_serializer("dagger", "collect")(dump_given)

    @field_validator("student_options")
    @classmethod
    def _check_options(cls, v: str) -> str:
        return check_local_options(v)

    @model_validator(mode="after")
    def _whole_configs(self) -> ExperimentConfig:
        check_collect(self.collect)
        unknown = sorted(set(self.recheck_arms or []) - {a.name for a in self.arms})
        if unknown:
            raise ValueError(f"recheck_arms: {', '.join(unknown)} is not an arm's name; name arms of `arms`")
        return self

    @field_validator("claims_size")
    @classmethod
    def _check_claims_size(cls, v: int | None, info: ValidationInfo) -> int | None:
        sizes = info.data.get("sizes", [])  # declared above, so validated first
        if v is not None and v not in sizes:
            raise ValueError(f"{v} is not one of sizes {sizes}; claims are made at a size the arms were trained at")
        return v
