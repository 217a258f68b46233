"""The config of `oec experiment`: the suite, the arms, the warm start, and what every arm shares."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationInfo, field_validator

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
    dagger: dict[str, Any] = Field(default_factory=dict, description="DaggerConfig fields: rounds, beta, schedule")
    collect: dict[str, Any] = Field(default_factory=dict, description="CollectConfig fields, e.g. loop.step_limit")
    workers: int = Field(8, ge=1)
    shift: bool = Field(True, description="covariate shift of the final students vs the expert (claim C1)")
    claims_size: int | None = Field(None, description="the dataset size the claims are made at [the largest of "
                                                      "sizes]; sizes are never pooled")
    trained_tokens: int | None = Field(None, ge=1, description="token-matched arms: each arm trains the steps that "
                                       "reach this many trained tokens on its own dataset instead of train.max_steps "
                                       "(unset: every arm trains the same steps)")

    @field_validator("student_options")
    @classmethod
    def _check_options(cls, v: str) -> str:
        return check_local_options(v)

    @field_validator("claims_size")
    @classmethod
    def _check_claims_size(cls, v: int | None, info: ValidationInfo) -> int | None:
        sizes = info.data.get("sizes", [])  # declared above, so validated first
        if v is not None and v not in sizes:
            raise ValueError(f"{v} is not one of sizes {sizes}; claims are made at a size the arms were trained at")
        return v
