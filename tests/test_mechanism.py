"""The mechanism check (oec.experiments.mechanism) on synthetic trajectories whose content is known."""

from oec.core.types import Action, Step, Trajectory, Verdict
from oec.experiments.mechanism import describe, mechanism_check, mistakes

PATCH = "--- a/p/m.py\n+++ b/p/m.py\n@@ -1 +1 @@\n-a\n+b\n"


def _step(actor, command, rc=0, observation="", format_error=False):
    action = None if format_error else Action(kind="submit") if command == "submit" else Action(kind="bash",
                                                                                                command=command)
    return Step(turn=0, actor=actor, output=command, action=action, observation=observation, returncode=rc,
                format_error=format_error)


def _traj(student, expert, resolved=True):
    steps = [_step("student", *s) if isinstance(s, tuple) else _step("student", s) for s in student]
    steps += [_step("expert", *s) if isinstance(s, tuple) else _step("expert", s) for s in expert]
    steps = [s.model_copy(update={"turn": i}) for i, s in enumerate(steps)]
    return Trajectory(task_id=f"t{len(steps)}", sample=0, mode="oec", policies={}, steps=steps, seed=0,
                      switch_turn=len(student), exit_status="submitted",
                      verdict=Verdict(resolved=resolved, tests={}, patch=PATCH))


FINISH = ["grep -rn 'def f(' p", "cat p/m.py", "edit p/m.py <<'EOF'\na\n=======\nb\nEOF", "runtests", "submit"]
CLEAN = _traj(["runtests", "grep -rn 'def f(' p"], FINISH[1:])  # the student was right so far: nothing corrected
FAILED_GREP = _traj(["runtests", ("grep -rn 'def g(' p", 1)], FINISH)
FORMAT = _traj([("I think", 0, "no bash block", True)], ["runtests"] + FINISH)
LOOP = _traj(["runtests", "cat p/x.py", "cat p/x.py"], FINISH)
BROKE = _traj(["runtests", "edit p/m.py <<'EOF'\nc\n=======\nd\nEOF"],
              ["git diff", "git checkout -- p/m.py"] + FINISH)
WRITEBACK = _traj(["runtests", "chmod 000 p/m.py"],  # git cannot restore a mode: the expert writes the file back
                  ["git diff", "git checkout -- p/m.py", "chmod u+rw p/m.py 2>/dev/null; cat > p/m.py <<'OEC_EOF'\na\n"
                   "OEC_EOF"] + FINISH)
ROUTE_REWRITE = _traj(["runtests", "cat > notes.txt <<'EOF'\nhm\nEOF"],  # a student write, but the expert's only
                      FINISH[:2] + ["cat > p/m.py <<'EOF'\nb\nEOF", "runtests", "submit"])  # write is its fix


def test_each_kind_of_mistake_is_found_and_a_clean_start_is_not_a_correction():
    assert mistakes(CLEAN) == set()
    assert mistakes(FAILED_GREP) == {"failed_command"}
    assert mistakes(_traj([("runtests", 1)], FINISH)) == set()  # it fails by design until the fix: no mistake
    assert mistakes(FORMAT) == {"format_error"}
    assert mistakes(LOOP) == {"repeated"}
    assert mistakes(BROKE) == {"broke_file"}
    assert mistakes(WRITEBACK) == {"broke_file"}
    assert mistakes(ROUTE_REWRITE) == set()  # the expert's route rewrite is a fix, not a restore
    # the expert restoring when the student wrote nothing: nothing of the student's was broken
    assert mistakes(_traj(["runtests"], ["git checkout -- p/m.py"] + FINISH)) == set()
    assert mistakes(_traj([("cat p/nope.py", 1)], [])) == set()  # no expert turn: nothing corrected


def test_shares_goals_and_the_student_only_rate():
    kept = [CLEAN, FAILED_GREP, FORMAT, BROKE]
    student = [_traj(["runtests"], [], resolved=r) for r in (True, False, False, False, True)]
    check = mechanism_check(kept, student)
    assert check["kept"] == 4 and check["corrected"] == 0.75 and check["restored"] == 0.25
    assert check["mistakes"] == {"format_error": 0.25, "failed_command": 0.25, "repeated": 0.0, "broke_file": 0.25}
    assert check["student_resolve_rate"] == 0.4 and check["student_episodes"] == 5
    assert check["goals"] == {"corrected >= 50%": True, "restored > 0": True}
    assert "corrected student mistake 75%" in describe("seed-0/pools/oec-uniform", check)

    missed = mechanism_check([CLEAN, CLEAN, FAILED_GREP], None)
    assert missed["corrected"] == 0.333 and missed["restored"] == 0.0 and missed["student_resolve_rate"] is None
    assert missed["goals"] == {"corrected >= 50%": False, "restored > 0": False}
    line = describe("p", missed)
    assert "corrected >= 50% MISSED" in line and "restored > 0 MISSED" in line and "pool tasks n/a" in line

    empty = mechanism_check([], [])
    assert empty["corrected"] is None and empty["goals"] == {"corrected >= 50%": None, "restored > 0": None}


def test_the_pool_check_uses_the_default_filters_whatever_filter_jsonl_says(tmp_path):
    from oec.experiments.mechanism import pool_check

    run = tmp_path / "oec"
    run.mkdir()
    unresolved = _traj(["runtests", ("cat p/x.py", 1)], FINISH, resolved=False).model_copy(update={"task_id": "u"})
    (run / "trajectories.jsonl").write_text("".join(t.model_dump_json() + "\n" for t in [CLEAN, BROKE, unresolved]))
    (run / "filter.jsonl").write_text("")  # an ablation's verdicts would not change the check
    check = pool_check(run, None)
    assert check["kept"] == 2 and check["corrected"] == 0.5 and check["restored"] == 0.5
