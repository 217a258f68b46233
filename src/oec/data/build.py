"""`oec build`: kept trajectories -> training data, rendered in the *student's* format with per-message trainability.

Masks: `expert` (default) trains only what the expert said: in OEC the turns from the switch on, in DAgger the expert's
*labels* at the states the student actually reached (one example per labelled state: the lived history, then the
label); `all` trains every assistant turn; `custom` trains the turns whose step has `info["trainable"]` set.

Tokenized exports use the student's own chat template: `assistant_masks` come from its `{% generation %}` blocks, one
block per assistant message, and blocks of untrained messages are zeroed. `context_masks` mark the tokens outside every
assistant message (the task, the observations, the template), for `oec train context_loss=W`: a tiny student learns
to copy names from its context much sooner when it also predicts them there (bench/RESULTS.md §8). Every trained turn is
checked to be prefix-consistent (the tokens the student would see at inference are a prefix of the training tokens), and
nothing is cut silently: an example longer than the budget is split, one example per trained turn, with the history
windowed from the left exactly as the local policy windows it at inference.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat

from oec.core.atomic import atomic_output, check_output, write_text
from oec.core.errors import InputError, PolicyError
from oec.core.protocols import Message
from oec.core.stage import BUILD_INFO, completed, digest, fingerprint, making
from oec.core.store import TRAJECTORIES, read_trajectories
from oec.core.types import Task, Trajectory
from oec.data.filter import kept_keys
from oec.formats import make_format
from oec.formats.base import fit_to_context
from oec.tasks.io import tasks_of_run


class BuildConfig(BaseModel):
    """What `oec build` reads and writes."""

    model_config = ConfigDict(extra="forbid")
    runs: list[str] = Field(min_length=1,
                            description="run directories (filtered ones contribute only kept trajectories)")
    out: str = Field(description="dataset directory (hf) or JSONL file (openai, sharegpt)")
    student: str | None = Field(None,
                                description="student model directory: its tokenizer and chat template (hf format)")
    student_format: str = Field("text", description="the student's Format")
    mask: Literal["expert", "all", "custom"] = "expert"
    format: Literal["hf", "trl", "openai", "sharegpt"] = Field(
        "hf", description="hf: tokenized with masks (oec train); trl: prompt-completion JSONL that plain TRL trains "
                          "on the expert turns only; openai: fine-tuning JSONL (weight 0/1); sharegpt")
    weights: list[NonNegativeFloat] | None = Field(None, description="one per run: how many times each run's "
                                                   "trajectories count (0 leaves a run out)")
    max_trajectories: int | None = Field(None, ge=1, description="sample this many trajectories (scaling curves)")
    max_tokens: int | None = Field(None, ge=64, description="token budget per example (default: the model's context)")
    seed: int = 0
    tasks: str | None = Field(None, description="tasks file (default: the one in each run's manifest)")


@dataclass
class Conversation:
    messages: list[Message]
    trainable: list[bool]  # one per assistant message
    meta: dict


def conversations(traj: Trajectory, task: Task, fmt, mask: str) -> list[Conversation]:
    """The training conversations one trajectory gives, in FMT, with trainability per assistant message."""
    messages = fmt.render(task, traj.steps)
    meta = {"task_id": traj.task_id, "sample": traj.sample, "mode": traj.mode,
            "switch_turn": -1 if traj.switch_turn is None else traj.switch_turn}
    if mask == "all":
        return [Conversation(messages, [True] * len(traj.steps), meta)]
    if mask == "custom":
        return [Conversation(messages, [bool(s.info.get("trainable")) for s in traj.steps], meta)]
    out = []
    expert_turns = [s.actor == "expert" for s in traj.steps]
    if any(expert_turns):
        out.append(Conversation(messages, expert_turns, meta))
    for i, step in enumerate(traj.steps):  # DAgger: the expert's label at a state the student reached
        if step.label is not None and step.label.action is not None:
            same = step.label.completion is not None and not step.label.completion.tool_calls and not fmt.tools
            target = step.label.output if same else fmt.write("", step.label.action)
            prefix = messages[: 2 + 2 * i]
            out.append(Conversation(prefix + [{"role": "assistant", "content": target}], [False] * i + [True],
                                    {**meta, "turn": i}))
    return out


def _examples(conv: Conversation, tokenizer, budget: int, stats: dict) -> list[dict]:
    """Tokenize CONV (split when it does not fit BUDGET); masks cover exactly the trained assistant messages."""
    enc = _encode(conv.messages, conv.trainable, tokenizer)
    if len(enc[0]) <= budget:
        last = max((i for i, f in enumerate(conv.trainable) if f), default=-1)
        pieces = [(conv.messages, conv.trainable, enc, conv.meta.get("turn", last))]
    else:  # one example per trained turn, its history windowed from the left as the student sees it
        pieces = []
        for k, train in enumerate(conv.trainable):
            if not train:
                continue
            head = conv.messages[: 2 + 2 * k]
            try:
                window = fit_to_context(head + [conv.messages[2 + 2 * k]],
                                        lambda m: len(_encode(m, [False] * ((len(m) - 2 + 1) // 2), tokenizer)[0]),
                                        budget)
            except PolicyError:  # even alone the turn does not fit: counted, never silently cut
                stats["dropped_tokens"] += len(tokenizer(conv.messages[2 + 2 * k]["content"])["input_ids"])
                continue
            n = (len(window) - 2 + 1) // 2
            flags = [False] * (n - 1) + [True]
            pieces.append((window, flags, _encode(window, flags, tokenizer), conv.meta.get("turn", k)))
    out = []
    for messages, flags, (ids, mask, context), turn in pieces:
        _check_prefix(messages, flags, ids, mask, tokenizer, conv.meta)
        stats["examples"] += 1
        stats["total_tokens"] += len(ids)
        stats["trainable_tokens"] += sum(mask)
        # `turn`: the trajectory turn of the last trained message (a DAgger label's state)
        out.append({"input_ids": ids, "assistant_masks": mask, "context_masks": context, **conv.meta, "turn": turn})
    return out


def _encode(messages: list[Message], trainable: list[bool], tokenizer) -> tuple[list[int], list[int], list[int]]:
    """(input ids, trained-turn mask, context mask: 1 outside every assistant message, trained or not)."""
    enc = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = list(enc["input_ids"]), list(enc["assistant_masks"])
    runs, start = [], None
    for i, m in enumerate(mask + [0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            runs.append((start, i))
            start = None
    n_assistant = sum(m["role"] == "assistant" for m in messages)
    if len(runs) != n_assistant:
        raise InputError(f"the student's chat template marks {len(runs)} generation blocks for {n_assistant} "
                         "assistant messages; it needs exactly one {% generation %} block per assistant message")
    context = [1 - m for m in mask]
    for (a, b), train in zip(runs, trainable):
        if not train:
            mask[a:b] = [0] * (b - a)
    return ids, mask, context


def _check_prefix(messages: list[Message], trainable: list[bool], ids: list[int], mask: list[int], tokenizer,
                  meta: dict) -> None:
    """What the student is shown before a trained turn at inference must be a prefix of what it is trained on."""
    for k in (2 + 2 * i for i, train in enumerate(trainable) if train):
        shown = list(tokenizer.apply_chat_template(messages[:k], add_generation_prompt=True, return_dict=False))
        if ids[: len(shown)] != shown:
            raise InputError(f"{meta['task_id']} sample {meta['sample']}: the student's chat template is not "
                             f"prefix-consistent at message {k}: what it sees at inference differs from what it is "
                             "trained on. Fix the template (e.g. no whitespace trimming around turns).")
        if not mask[len(shown)]:  # tokens between the prompt and the reply would never be learned, yet are expected
            gap = tokenizer.decode(ids[len(shown): len(shown) + 5])
            raise InputError(f"{meta['task_id']} sample {meta['sample']}: the student's chat template's generation "
                             f"prompt ends before the trained reply starts (untrained tokens {gap!r} follow it), so "
                             "the model never learns to write them. Make the generation prompt end exactly where "
                             "the {% generation %} block begins (models made by `oec student init` before this "
                             "fix have this problem: re-create them).")


def _select(cfg: BuildConfig) -> list[tuple[Trajectory, Task, str]]:
    weights = cfg.weights or [1.0] * len(cfg.runs)
    if len(weights) != len(cfg.runs):
        raise InputError(f"--weights has {len(weights)} values for {len(cfg.runs)} runs; give one per run")
    if not any(weights):
        raise InputError(f"--weights {','.join(map(str, weights))}: every run is left out; give at least one a "
                         "weight above 0")
    rng = random.Random(cfg.seed)
    chosen = []
    for run, w in zip(cfg.runs, weights):
        run = Path(run)
        keep = kept_keys(run)
        tasks = tasks_of_run(run, cfg.tasks)
        # In (task, sample) order, not file order (the order episodes happened to finish): the sample is then a
        # function of the pool's content and the seed only, the same after a crash-resumed collection.
        trajs = sorted((t for t in read_trajectories(run) if (keep is None and t.resolved) or (keep and t.key in keep)),
                       key=lambda t: t.key)
        whole, frac = int(w), w - int(w)
        picked = trajs * whole + rng.sample(trajs, round(frac * len(trajs)))
        missing = sorted({t.task_id for t in picked} - set(tasks))
        if missing:
            raise InputError(f"{run}: trajectories of tasks {missing[:3]} are not in its tasks file; pass --tasks")
        chosen += [(t, tasks[t.task_id], str(run)) for t in picked]
    if cfg.max_trajectories is not None:
        if cfg.max_trajectories > len(chosen):
            raise InputError(f"--max-trajectories {cfg.max_trajectories}: only {len(chosen)} trajectories are kept")
        chosen = rng.sample(chosen, cfg.max_trajectories)
    return chosen


def check_inputs(cfg: BuildConfig) -> None:
    """What can be checked before reading any trajectory."""
    check_output(cfg.out, "dir" if cfg.format == "hf" else "file", marker=BUILD_INFO if cfg.format == "hf" else None)
    for run in cfg.runs:
        if not Path(run).is_dir():
            raise InputError(f"run {run}: no such directory (give run directories written by `oec collect`)")
    if cfg.format == "hf":
        if not cfg.student:
            raise InputError("--format hf needs --student MODEL_DIR (its tokenizer and chat template)")
        if not (Path(cfg.student) / "tokenizer_config.json").is_file():
            raise InputError(f"--student {cfg.student}: no tokenizer_config.json there; give a model directory "
                             "(e.g. one written by `oec student init` or `oec train`)")


def build_key(cfg: BuildConfig) -> dict:
    """What a built dataset is made from: its config and what its inputs hold now (a run that has grown, a filter
    rerun that keeps other trajectories, another tokenizer all change it)."""
    inputs = [Path(r) / TRAJECTORIES for r in cfg.runs]
    inputs += [Path(cfg.student)] if cfg.student else []
    inputs += [Path(cfg.tasks)] if cfg.tasks else []
    # Which trajectories each run's filter keeps, not its verdict file's bytes: arms that share a pool rewrite its
    # verdicts under their own filter settings before they build, and one arm's rewrite must not make another's
    # finished dataset (and so its checkpoint) look stale when it keeps the same trajectories.
    kept = [sorted(k) if (k := kept_keys(r)) is not None else None for r in cfg.runs]
    # the paths are left out (their contents are in the fingerprint), so an experiment moved elsewhere resumes
    return {"config": cfg.model_dump(exclude={"out", "runs", "student", "tasks"}), "inputs": fingerprint(*inputs),
            "kept": digest(kept)}


def build(cfg: BuildConfig) -> dict:
    """Build the dataset; a complete one made from the same config and inputs is kept as it is (`reused`: true)."""
    check_inputs(cfg)
    key = build_key(cfg)
    if cfg.format == "hf" and (done := completed(cfg.out, BUILD_INFO, key)) is not None:
        return {**done, "reused": True}
    fmt = make_format(cfg.student_format)
    chosen = _select(cfg)
    if not chosen:
        raise InputError(f"no kept trajectories in {cfg.runs}: nothing to build (see `oec filter` and `oec show`)")
    convs = [(c, run) for t, task, run in chosen for c in conversations(t, task, fmt, cfg.mask)]
    out = Path(cfg.out)
    stats = {"trajectories": len(chosen), "conversations": len(convs), "examples": 0, "total_tokens": 0,
             "trainable_tokens": 0, "dropped_tokens": 0}
    info = {"config": cfg.model_dump(), "stats": stats}
    if cfg.format in ("trl", "openai", "sharegpt"):
        records = [r for conv, run in convs for r in _text_records(conv, run, cfg.format, fmt.tools)]
        with atomic_output(out) as tmp, tmp.open("w") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
        stats["examples"] = len(records)
        write_text(out.parent / f"{out.name}.build.json", json.dumps(info, indent=2) + "\n")
    else:
        from datasets import Dataset
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(cfg.student)
        budget = cfg.max_tokens or int(tokenizer.model_max_length)
        # Over-long conversations are split below, never truncated: the tokenizer's one-time "longer than the
        # maximum" warning would only say what we already handle.
        tokenizer.deprecation_warnings["sequence-length-is-longer-than-the-specified-maximum"] = True
        rows = [dict(ex, run=run) for conv, run in convs for ex in _examples(conv, tokenizer, budget, stats)]
        if not rows:
            raise InputError(f"no trainable examples from {cfg.runs} with --mask {cfg.mask}")
        with making(out, BUILD_INFO, key) as (tmp, record):
            Dataset.from_list(rows).save_to_disk(str(tmp))
            tokenizer.save_pretrained(tmp / "tokenizer")
            record.update(info)
    return info


def _with_objects(message: Message) -> Message:
    """MESSAGE with its tool calls' arguments as JSON objects, as chat templates expect them (a JSON string is
    encoded a second time by `tojson`)."""
    if not message.get("tool_calls"):
        return dict(message)
    calls = [{**c, "function": {**c["function"], "arguments": json.loads(c["function"]["arguments"] or "{}")}}
             for c in message["tool_calls"]]
    return {**message, "tool_calls": calls}


def _text_records(conv: Conversation, run: str, kind: str, tools: list | None) -> list[dict]:
    """CONV as records of an export another trainer reads as it is.

    trl: TRL's conversational prompt-completion records, one per trained assistant turn: the history as the student
    lived it is the prompt, the turn is the completion; TRL trains completions only (its `completion_only_loss`
    default), so no student turn is trained, whatever `assistant_only_loss` says. openai: the whole conversation
    with OpenAI's fine-tuning `weight` (0/1) on each assistant message (TRL ignores `weight`). Both carry the
    format's tool schemas as `tools`."""
    meta = {**conv.meta, "turn": conv.meta.get("turn", -1), "run": run}
    extra = {"tools": tools} if tools else {}
    if kind == "trl":
        out, k = [], -1
        for i, m in enumerate(conv.messages):
            if m["role"] == "assistant":
                k += 1
                if conv.trainable[k]:
                    out.append({"prompt": [_with_objects(x) for x in conv.messages[:i]],
                                "completion": [_with_objects(m)], **extra, "metadata": {**meta, "turn": k}})
        return out
    flags = iter(conv.trainable)
    if kind == "openai":  # OpenAI's own convention: arguments stay JSON strings
        msgs = [dict(m, weight=int(next(flags))) if m["role"] == "assistant" else dict(m) for m in conv.messages]
        return [{"messages": msgs, **extra, "metadata": meta}]
    who = {"system": "system", "user": "human", "assistant": "gpt", "tool": "tool"}
    turns = [{"from": who[m["role"]], "value": m.get("content") or "",
              "train": bool(next(flags)) if m["role"] == "assistant" else False} for m in conv.messages]
    return [{"conversations": turns, "metadata": meta}]
