"""`oec tasks import`: SWE-bench / SWE-Gym and SWE-smith instances -> Tasks over local clones.

An instance that cannot be used (its repo is not under --repos-dir, its commit is missing, a field is malformed) is
reported on its own and the import goes on: `import_instances` returns the tasks and one error per bad instance.

`--repos-dir` maps an instance's `repo` ("owner/name") to the first directory that exists of
DIR/owner/name, DIR/owner__name, DIR/name (SWE-smith mirrors, "swesmith/owner__name.commit", the same way).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from pydantic import ValidationError

from oec.core.errors import InputError, InstanceError, MaterialiseError, describe
from oec.core.types import GitRepo, Task
from oec.env import harness
from oec.env.repos import check_commit, git, patch_paths, reverse_patch, template
from oec.tasks.mutate import statement

FORMATS = ("swebench", "swesmith")
SWEBENCH_FIELDS = ("instance_id", "repo", "base_commit", "problem_statement", "patch", "test_patch",
                   "FAIL_TO_PASS", "PASS_TO_PASS")


def read_instances(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, instance) from a JSONL file, or from a JSON array (SWE-smith publishes those)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such instances file")
    text = path.read_text()
    if text.lstrip().startswith("["):
        try:
            return [(i + 1, x) for i, x in enumerate(json.loads(text))]
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append((lineno, json.loads(line)))
            except json.JSONDecodeError as e:
                raise InputError(f"{path} line {lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
    return out


def repo_dir(repos_dir: Path, repo: str) -> Path:
    owner, _, name = repo.rpartition("/")
    candidates = [repos_dir / repo, repos_dir / f"{owner}__{name}", repos_dir / name] if owner else [repos_dir / repo]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    raise InstanceError(f"repo {repo!r} is not cloned under {repos_dir} (looked for "
                        f"{', '.join(str(c) for c in candidates)})")


def _tests(value, field: str) -> list[str]:
    """SWE-bench stores the test lists as JSON text; SWE-smith as lists."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise InstanceError(f"field {field!r}: not a JSON list of test ids") from None
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise InstanceError(f"field {field!r}: expected a list of test ids")
    return value


def _test_files(ids: list[str], extra: list[str]) -> list[str]:
    """Files verification restores: the test_patch's files and the files the pytest ids name."""
    return sorted(set(extra) | {t.split("::", 1)[0] for t in ids if "::" in t})


def swebench_task(inst: dict, repos_dir: Path, split: str) -> Task:
    missing = [f for f in SWEBENCH_FIELDS if f not in inst]
    if missing:
        raise InstanceError(f"missing field(s) {', '.join(missing)}")
    path = repo_dir(repos_dir, inst["repo"])
    commit = check_commit(path, inst["base_commit"], f"repo {inst['repo']}")
    f2p, p2p = _tests(inst["FAIL_TO_PASS"], "FAIL_TO_PASS"), _tests(inst["PASS_TO_PASS"], "PASS_TO_PASS")
    meta = {"format": "swebench", "repo": inst["repo"], "version": inst.get("version")}
    for key in ("environment_setup_commit", "image_name", "created_at"):
        if inst.get(key):
            meta[key] = inst[key]
    return Task(task_id=inst["instance_id"], suite="swebench", split=split,
                problem_statement=inst["problem_statement"],
                repo=GitRepo(kind="git", path=str(path), base_commit=commit, test_patch=inst["test_patch"]),
                FAIL_TO_PASS=f2p, PASS_TO_PASS=p2p, test_files=_test_files(f2p, patch_paths(inst["test_patch"])),
                gold_patch=inst["patch"], test_command=_official_command(inst, f2p + p2p), meta=meta)


def _official_command(inst: dict, ids: list[str]):
    """SWE-bench's own test command for INST where swebench specifies its repo and version; None (pytest node ids,
    as before) for an instance of another repo whose ids pytest takes; refused otherwise, with the reason."""
    if harness.available():
        command = harness.swebench_command(inst)
        if command is not None:
            return command
    bad = [t for t in ids if "::" not in t]
    if bad:
        why = ("swebench has no specification for " f"{inst['repo']} version {inst.get('version')!r}"
               if harness.available() else harness.INSTALL)
        raise InstanceError(f"its tests are not pytest node ids (e.g. {bad[0]!r}) and oec cannot run them: {why}")
    return None


def swesmith_task(inst: dict, repos_dir: Path, split: str) -> Task:
    """SWE-smith's `patch` *introduces* the bug; the fix is its reverse. Its evaluation applies the gold patch with
    `git apply --reverse` ("gold patches = bug patches, so fix = revert", swesmith/harness/utils.py, _apply_patch).
    `swesmith harness gather` commits the bug on a branch named after the instance ("Bug Patch") and records that
    branch's head as `base_commit`; newer versions then delete the FAIL_TO_PASS test files in a "Remove F2P Tests"
    commit on top, which its evaluation checks back out of HEAD~1 (swesmith/harness/gather.py).
    So: start from base_commit (or the branch); if its head removed the tests, bring them back at verification only
    (our test_patch); without either in the clone, start from the clean mirror commit and apply the bug patch."""
    missing = [f for f in ("instance_id", "repo", "patch", "FAIL_TO_PASS", "PASS_TO_PASS") if f not in inst]
    if missing:
        raise InstanceError(f"missing field(s) {', '.join(missing)}")
    iid, repo = inst["instance_id"], inst["repo"]
    _check_python_profile(inst)
    path = repo_dir(repos_dir, repo)
    f2p, p2p = _tests(inst["FAIL_TO_PASS"], "FAIL_TO_PASS"), _tests(inst["PASS_TO_PASS"], "PASS_TO_PASS")
    base, bug_patch, test_patch = None, "", ""
    for ref in (inst.get("base_commit"), iid):
        if ref:
            try:
                base = check_commit(path, ref, f"repo {repo}")
                break
            except MaterialiseError:
                continue
    if base is not None:
        if git(path, "log", "-1", "--format=%s", base).strip() == "Remove F2P Tests":
            test_patch = git(path, "diff", "--no-color", "--no-ext-diff", base, f"{base}~1")
    else:
        # the clean state: the upstream commit the mirror is named after, or the mirror's own HEAD (SWE-smith
        # mirrors squash the history into one "Initial commit" at that state)
        named = repo.rsplit(".", 1)[1] if "." in repo.rsplit("/", 1)[-1] else None
        for ref in (named, "HEAD"):
            try:
                base = check_commit(path, ref, f"repo {repo}") if ref else None
            except MaterialiseError:
                continue
            if base:
                break
        if base is None:
            raise InstanceError(f"neither base_commit {inst.get('base_commit')!r} nor a branch {iid!r} is in {path}, "
                                "and it has no commit to apply the bug patch to")
        bug_patch = inst["patch"]
    # many SWE-smith instances carry no issue text: name the failing tests, as a report from CI would
    text = inst.get("problem_statement") or statement({t: "" for t in f2p})
    meta = {"format": "swesmith", "repo": repo}
    if inst.get("image_name"):
        meta["image_name"] = inst["image_name"]
    return Task(task_id=iid, suite="swesmith", split=split, problem_statement=text,
                repo=GitRepo(kind="git", path=str(path), base_commit=base, bug_patch=bug_patch, test_patch=test_patch),
                FAIL_TO_PASS=f2p, PASS_TO_PASS=p2p, test_files=_test_files(f2p + p2p, patch_paths(test_patch)),
                gold_patch=reverse_patch(inst["patch"]), test_command=harness.swesmith_command(inst), meta=meta)


def _check_python_profile(inst: dict) -> None:
    """Refuse a SWE-smith instance whose repository profile is not a Python one: its tests are not pytest's (540 of
    swesmith's 673 profiles are Go, Rust, JavaScript...). Without swesmith installed, the test ids decide."""
    def by_ids(why: str) -> None:
        if not all("::" in t for t in _tests(inst["FAIL_TO_PASS"], "FAIL_TO_PASS")):
            raise InstanceError(f"its tests are not pytest node ids and {why}")

    try:
        from swesmith.profiles import registry
        from swesmith.profiles.python import PythonProfile
    except ImportError:
        return by_ids(f"its repository's profile cannot be looked up: {harness.INSTALL}")
    try:
        profile = registry.get_from_inst(inst)
    except Exception:  # a repo of the user's own SWE-smith run: swesmith raises a plain error for it
        return by_ids(f"swesmith has no repository profile for {inst['repo']!r}")
    if not isinstance(profile, PythonProfile):
        raise InstanceError(f"its repository profile ({type(profile).__name__}) is not a Python one: its tests run "
                            f"with {profile.test_cmd.split(';')[-1].strip()!r}, not pytest, and oec cannot verify it")


def import_instances(path: str | Path, fmt: str, repos_dir: str | Path, split: str = "train",
                     check: bool = False) -> tuple[list[Task], list[dict]]:
    """Tasks, and {instance_id, line, reason} for each instance that could not be imported. CHECK: also build
    each task's workspace once (applies bug_patch / test_patch), so a patch that does not apply is reported here."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    repos_dir = Path(repos_dir).expanduser()
    if not repos_dir.is_dir():
        raise InputError(f"--repos-dir {repos_dir}: no such directory (it holds the clones, e.g. DIR/owner/name)")
    make = swebench_task if fmt == "swebench" else swesmith_task
    tasks, errors, seen = [], [], set()
    for lineno, inst in read_instances(path):
        iid = inst.get("instance_id", f"<line {lineno}>") if isinstance(inst, dict) else f"<line {lineno}>"
        try:
            if not isinstance(inst, dict):
                raise InstanceError("not a JSON object")
            if iid in seen:
                raise InstanceError("instance_id repeats an earlier instance")
            task = make(inst, repos_dir, split)
            if check:
                template(task)
        except ValidationError as e:
            errors.append({"instance_id": iid, "line": lineno, "reason": describe(e)})
        except (InstanceError, MaterialiseError, subprocess.CalledProcessError) as e:
            failed = isinstance(e, subprocess.CalledProcessError)
            reason = e.stderr.decode(errors="replace").strip() if failed else str(e)
            errors.append({"instance_id": iid, "line": lineno, "reason": reason})
        else:
            seen.add(iid)
            tasks.append(task)
    return tasks, errors
