"""The mechanism check: does the OEC pool hold what OEC learns from, before any arm trains on it?

OEC has something to teach only where the student goes wrong and the expert, taking over, puts it right
(docs/method.md). In an OEC pool's kept trajectories (the default filters: resolved, not degenerate) this counts

- **a corrected student mistake**: the student's turns (before the switch) hold at least one of
  - `format_error`: a reply that could not be parsed;
  - `failed_command`: a command that failed (non-zero exit), other than `runtests`, which fails by design until the
    fix: a grep for a name that is not there, a `cat` of a path that does not exist, an edit whose old text is not
    in the file;
  - `repeated`: the same command as the student's previous one (a loop);
  - `broke_file`: the expert restored a file the student broke (below);

  and the trajectory is kept, i.e. the expert's turns that follow took it from that history to a verified fix.
  A mistake the student itself undid before the switch counts too: the expert's turns are still conditioned on it.
- **the expert restored a file the student broke**: the student ran a command that writes (anything
  `oec.core.shell_facts.is_read_only` does not call read-only, `runtests` aside), and after the switch the expert ran a
  restoring command: `git checkout`, `git restore`, `git stash`, `rm`, or its whole-file write-back (the
  `OEC_EOF` heredoc of `oec.rollout.policies.edits.rewrite_command`). The expert's own fixes (the `edit` tool,
  `sed -i`, a route's `cat > FILE <<'EOF'` rewrite) are not restores. The scripted expert restores only files that
  are neither the base version nor on the way to the fix, so this is a wrong edit, a deletion or a chmod by the student.

Goals: corrected >= 50% of kept OEC trajectories, restored > 0 (docs/tasks.md, the multihop preset). The student-only
resolve rate on the same pool tasks says how much room there is: near 0 leaves the student nothing of its own to build
on, near 1 nothing to correct.
"""

from __future__ import annotations

from pathlib import Path

from oec.core.shell_facts import is_read_only
from oec.core.types import Trajectory

MISTAKES = ("format_error", "failed_command", "repeated", "broke_file")
RESTORES = ("git checkout", "git restore", "git stash", "rm ")
GOALS = {"corrected": 0.5, "restored": 0.0}  # corrected >= 0.5; restored > 0


def _command(step) -> str:
    return step.action.command if step.action and step.action.kind == "bash" else ""


def restores(command: str) -> bool:
    return command.startswith(RESTORES) or "<<'OEC_EOF'" in command


def mistakes(traj: Trajectory) -> set[str]:
    """The kinds of student mistake in TRAJ that the expert's turns follow (the module docstring defines them)."""
    student = [s for s in traj.steps if s.actor == "student"]
    expert = [s for s in traj.steps if s.actor == "expert"]
    found = set()
    previous = None
    for s in student:
        command = _command(s)
        if s.format_error:
            found.add("format_error")
        elif command and command != "runtests" and s.returncode not in (0, None):
            found.add("failed_command")
        if command and command == previous:
            found.add("repeated")
        previous = command or previous
    if broke_and_restored(traj):
        found.add("broke_file")
    return found if expert else set()  # no expert turn: nothing was corrected


def broke_and_restored(traj: Trajectory) -> bool:
    wrote = any((c := _command(s)) and c != "runtests" and not is_read_only(c)
                for s in traj.steps if s.actor == "student")
    return wrote and any(restores(_command(s)) for s in traj.steps if s.actor == "expert")


def mechanism_check(oec_kept: list[Trajectory], student_pool: list[Trajectory] | None) -> dict:
    """OEC_KEPT: the kept trajectories of an OEC pool; STUDENT_POOL: every episode of the student-only pool on the
    same tasks (None: not collected). Shares are of the kept OEC trajectories; a goal with nothing to measure is
    None (not met, not missed)."""
    n = len(oec_kept)
    found = [mistakes(t) for t in oec_kept]
    by_kind = {k: round(sum(k in f for f in found) / n, 3) if n else None for k in MISTAKES}
    corrected = round(sum(bool(f) for f in found) / n, 3) if n else None
    restored = by_kind["broke_file"]
    rate = round(sum(t.resolved for t in student_pool) / len(student_pool), 3) if student_pool else None
    goals = {"corrected >= 50%": None if corrected is None else corrected >= GOALS["corrected"],
             "restored > 0": None if restored is None else restored > GOALS["restored"]}
    return {"kept": n, "corrected": corrected, "restored": restored, "mistakes": by_kind,
            "student_resolve_rate": rate, "student_episodes": len(student_pool or []), "goals": goals}


def kept(run: Path) -> list[Trajectory]:
    """The trajectories of RUN that the default filters keep (as an OEC arm's do), whatever filter.jsonl says now:
    an ablation arm rewrites it with its own settings."""
    from oec.core.store import read_trajectories
    from oec.data.filter import FilterConfig, checks

    tests = checks(FilterConfig())
    return [t for t in read_trajectories(run) if not any(check(t) is not None for check in tests.values())]


def pool_check(oec_run: Path, student_run: Path | None) -> dict:
    from oec.core.store import read_trajectories

    student = read_trajectories(student_run) if student_run and (student_run / "trajectories.jsonl").exists() else None
    return mechanism_check(kept(oec_run), student)


def describe(name: str, check: dict) -> str:
    """One log line: the figures and which goals are met or missed."""
    def pct(v):
        return "n/a" if v is None else f"{v:.0%}"

    verdicts = ", ".join(f"{goal} {'n/a' if ok is None else 'met' if ok else 'MISSED'}"
                         for goal, ok in check["goals"].items())
    return (f"mechanism {name}: {check['kept']} kept; corrected student mistake {pct(check['corrected'])}, expert "
            f"restored a broken file {pct(check['restored'])}, student-only resolve rate on the pool tasks "
            f"{pct(check['student_resolve_rate'])} ({verdicts})")
