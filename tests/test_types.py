import pytest
from pydantic import ValidationError

from oec.core.types import SCHEMA_VERSION, Action, Step, Task, Trajectory, Verdict


def test_trajectory_json_round_trip(train_tasks):
    step = Step(turn=0, actor="student", output="x", action=Action(kind="bash", command="ls"), observation="a\n")
    traj = Trajectory(task_id="t", sample=1, mode="oec", policies={"student": "s", "expert": "e"}, switch_turn=0,
                      steps=[step], exit_status="submitted", verdict=Verdict(resolved=True, tests={}), seed=3)
    again = Trajectory.model_validate_json(traj.model_dump_json())
    assert again == traj
    assert again.schema_version == SCHEMA_VERSION
    task = train_tasks[0]
    assert Task.model_validate_json(task.model_dump_json()) == task


def test_unknown_field_is_rejected_with_its_name(train_tasks):
    data = train_tasks[0].model_dump()
    data["FAIL_TO_PAS"] = []
    with pytest.raises(ValidationError, match="FAIL_TO_PAS"):
        Task.model_validate(data)


def test_actor_must_be_student_or_expert():
    with pytest.raises(ValidationError, match="actor"):
        Step(turn=0, actor="teacher", output="", action=None, observation="")
