"""Build, once, an offline corpus of SWE-bench-format instances from real PyPI sdists, for tests/test_swe_corpus.py.

Three repositories as SWE-bench grades them, each by its own runner: django 4.2 (`tests/runtests.py`, ids
`test_x (module.Class.test_x)`), sympy 1.12 (`bin/test`, bare function names) and flask 2.3 (pytest, with a
skipped and an xfail test among PASS_TO_PASS). For each: the sdist as a git repository, a bug (django's is real:
4.2.16 lists the boolean attribute "defer " with a space, in library code under `django/test/`), the fix as
`patch`, a new test as
`test_patch`, and a venv with the repository's dependencies as swebench's specification lists them (the workspace
made importable by a `.pth`, as an editable install would). FAIL_TO_PASS and PASS_TO_PASS are derived as the
SWE-bench collection derives them: the official test command run before and after the fix, read by swebench's own
log parser.

    python scripts/swe_corpus.py [DIR]      (default $OEC_SWE_CORPUS or ~/.cache/oec/swe-corpus-1)

A complete corpus is kept: DIR/instances.jsonl is written last, so a directory without it (an interrupted build)
is removed and built again. It is built in place (a venv cannot move). Needs the package registry (pip download)
and the swe extra (swebench).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from swebench.harness.constants import MAP_REPO_VERSION_TO_SPECS
from swebench.harness.log_parsers import MAP_REPO_TO_PARSER
from swebench.harness.test_spec.test_spec import TestSpec

from oec.env.harness import swebench_command

DEFAULT = Path(os.environ.get("OEC_SWE_CORPUS", Path.home() / ".cache/oec/swe-corpus-1"))
GIT = ["git", "-c", "user.name=corpus", "-c", "user.email=corpus@localhost", "-c", "gc.auto=0"]

SYMPY_BIN_TEST = '''#!/usr/bin/env python
"""bin/test of the sympy git repository (its PyPI sdist lacks it), with the options SWE-bench's command passes."""
import argparse
import os
import sys

parser = argparse.ArgumentParser()
parser.add_argument("-C", "--no-cache", dest="cache", action="store_false")
parser.add_argument("-v", "--verbose", action="store_true")
parser.add_argument("paths", nargs="*")
args, _ = parser.parse_known_args()
if not args.cache:
    os.environ["SYMPY_USE_CACHE"] = "no"
import sympy  # noqa: E402

sys.exit(0 if sympy.test(*args.paths, verbose=args.verbose, colors=False) else 1)
'''

INSTANCES = [
    {"instance_id": "django__django-oec-1", "repo": "django/django", "version": "4.2", "sdist": "django==4.2.16",
     "deps": ["asgiref>=3.6.0,<4", "sqlparse>=0.3.1"],
     "problem_statement": "assertHTMLEqual() treats `<script defer>` and `<script defer=\"defer\">` as different: "
                          "`defer` is a boolean attribute, but it is listed in BOOLEAN_ATTRIBUTES as \"defer \".",
     "bug": None, "fix": ("django/test/html.py", '"defer ",', '"defer",'),
     "test": ("tests/test_utils/tests.py", "class HTMLEqualTests(SimpleTestCase):\n",
              "class HTMLEqualTests(SimpleTestCase):\n    def test_boolean_attribute_defer(self):\n"
              "        self.assertHTMLEqual(\"<script defer></script>\", '<script defer=\"defer\"></script>')\n\n")},
    {"instance_id": "sympy__sympy-oec-1", "repo": "sympy/sympy", "version": "1.12", "sdist": "sympy==1.12",
     "files": {"bin/test": SYMPY_BIN_TEST},
     "problem_statement": "rotate_left(x, y) returns x unchanged when y is larger than len(x): "
                          "rotate_left([0, 1, 2], 4) gives [0, 1, 2], expected [1, 2, 0].",
     "bug": ("sympy/utilities/iterables.py", "    y = y % len(x)\n    return x[y:] + x[:y]\n",
             "    y = min(y, len(x))\n    return x[y:] + x[:y]\n"),
     "test": ("sympy/utilities/tests/test_iterables.py", "def test_rotate():\n",
              "def test_rotate_left_wraps():\n    assert rotate_left([0, 1, 2], 4) == [1, 2, 0]\n\n\n"
              "def test_rotate():\n")},
    {"instance_id": "pallets__flask-oec-1", "repo": "pallets/flask", "version": "2.3", "sdist": "flask==2.3.3",
     "problem_statement": "Config.get_namespace() upper-cases the keys it returns when lowercase=True.",
     "bug": ("src/flask/config.py", "                key = key.lower()\n", "                key = key.upper()\n"),
     "test": ("tests/test_config.py", "def test_get_namespace():\n",
              "def test_get_namespace_lowercase():\n    app = flask.Flask(__name__)\n"
              "    app.config[\"FOO_A\"] = 1\n    assert app.config.get_namespace(\"FOO_\") == {\"a\": 1}\n\n\n"
              "def test_get_namespace_from_dotenv():\n    pytest.importorskip(\"dotenv\")\n\n\n"
              "@pytest.mark.xfail(reason=\"a known limitation\")\ndef test_get_namespace_nested():\n"
              "    assert flask.Flask(__name__).config.get_namespace(\"A_B_\") == {\"b\": {}}\n\n\n"
              "def test_get_namespace():\n"),
     "skipped_p2p": True, "importable": "src", "more_deps": ["blinker>=1.6.2", "pytest==7.4.4"]},
]


def run(cmd, cwd=None, env=None, check=True) -> str:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and r.returncode:
        sys.exit(f"swe_corpus: {' '.join(map(str, cmd))} failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return r.stdout + r.stderr


def edit(path: Path, old: str, new: str) -> None:
    """Replace OLD, which must occur exactly once, by NEW."""
    text = path.read_text()
    if text.count(old) != 1:
        sys.exit(f"swe_corpus: {path}: expected {old!r} exactly once")
    path.write_text(text.replace(old, new))


def diff_of(repo: Path, change) -> str:
    """The diff CHANGE (a function of the work tree) makes, the work tree restored after."""
    change()
    out = run(GIT + ["diff", "--no-color", "--full-index"], cwd=repo)
    run(GIT + ["checkout", "--", "."], cwd=repo)
    return out


def make_repo(inst: dict, dest: Path, sdists: Path) -> str:
    run([sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps", "-d", sdists,
         inst["sdist"]])
    name, version = inst["sdist"].split("==")
    archive = next(p for p in sdists.iterdir() if p.name.lower().startswith(f"{name}-{version}".lower()))
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
        shutil.move(next(Path(tmp).iterdir()), dest)
    for rel, text in inst.get("files", {}).items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_text(text)
        (dest / rel).chmod(0o755)
    run(GIT + ["init", "-q", "-b", "main"], cwd=dest)
    run(GIT + ["add", "-A"], cwd=dest)
    run(GIT + ["commit", "-q", "-m", "sdist"], cwd=dest)
    if inst["bug"]:
        edit(dest / inst["bug"][0], inst["bug"][1], inst["bug"][2])
        run(GIT + ["commit", "-q", "-am", "bug"], cwd=dest)
    return run(GIT + ["rev-parse", "HEAD"], cwd=dest).strip()


def make_venv(inst: dict, dest: Path) -> Path:
    run([sys.executable, "-m", "venv", dest])
    spec = MAP_REPO_VERSION_TO_SPECS[inst["repo"]][inst["version"]]
    # swebench's pins, and what `pip install -e .` adds in its environment
    deps = (inst.get("deps") or spec.get("pip_packages", [])) + inst.get("more_deps", [])
    run([dest / "bin/python", "-m", "pip", "install", "-q", *deps])
    site = Path(run([dest / "bin/python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    # the workspace as an editable install would make it importable (the sandbox mounts it at /workspace)
    (site / "oec-workspace.pth").write_text(f"/workspace/{inst.get('importable', '')}".rstrip("/") + "\n")
    return dest / "bin/python"


def statuses(inst: dict, repo: Path, python: Path, patches: list[str]) -> dict[str, str]:
    """The official test command's results on REPO's base with PATCHES applied, by swebench's parser."""
    command = swebench_command({**inst, "FAIL_TO_PASS": "[]", "PASS_TO_PASS": "[]"}).command
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "w"
        shutil.copytree(repo, work, symlinks=True)
        for p in patches:
            subprocess.run(["git", "apply", "-"], cwd=work, input=p, text=True, check=True)
        env = {**os.environ, "PATH": f"{python.parent}:{os.environ['PATH']}",
               "PYTHONPATH": str(work / inst.get("importable", ""))}
        log = run(["bash", "-c", command], cwd=work, env=env, check=False)
    spec = TestSpec(instance_id=inst["instance_id"], repo=inst["repo"], version=inst["version"], repo_script_list=[],
                    eval_script_list=[], env_script_list=[], arch="x86_64", FAIL_TO_PASS=[], PASS_TO_PASS=[],
                    language="py", docker_specs={}, namespace=None)
    return MAP_REPO_TO_PARSER[inst["repo"]](log, spec)


def build(root: Path) -> None:
    sdists = root / "sdists"
    sdists.mkdir(parents=True)
    rows = []
    for inst in INSTANCES:
        name = inst["repo"].replace("/", "__")
        repo = root / "repos" / name
        repo.parent.mkdir(exist_ok=True)
        base = make_repo(inst, repo, sdists)
        python = make_venv(inst, root / "venvs" / name)
        if inst["bug"]:
            gold = diff_of(repo, lambda: edit(repo / inst["bug"][0], inst["bug"][2], inst["bug"][1]))
        else:
            gold = diff_of(repo, lambda: edit(repo / inst["fix"][0], inst["fix"][1], inst["fix"][2]))
        test_patch = diff_of(repo, lambda: edit(repo / inst["test"][0], inst["test"][1], inst["test"][2]))
        row = {"instance_id": inst["instance_id"], "repo": inst["repo"], "version": inst["version"],
               "base_commit": base, "environment_setup_commit": base, "problem_statement": inst["problem_statement"],
               "patch": gold, "test_patch": test_patch}
        before = statuses(inst | row, repo, python, [test_patch])
        after = statuses(inst | row, repo, python, [test_patch, gold])
        f2p = sorted(t for t, s in after.items() if s == "PASSED" and before.get(t) != "PASSED")
        p2p = sorted(t for t, s in after.items() if s == "PASSED" and before.get(t) == "PASSED")
        if inst.get("skipped_p2p"):  # tests SWE-bench's grading counts as maintained: skipped here, and xfail
            p2p += sorted(t for t, s in after.items() if s in ("SKIPPED", "XFAIL"))
        if not f2p or not p2p:
            sys.exit(f"swe_corpus: {inst['instance_id']}: no FAIL_TO_PASS or PASS_TO_PASS tests ({len(before)} "
                     f"results before, {len(after)} after)")
        rows.append({**row, "FAIL_TO_PASS": json.dumps(f2p), "PASS_TO_PASS": json.dumps(p2p)})
        print(f"swe_corpus: {inst['instance_id']}: {len(f2p)} FAIL_TO_PASS, {len(p2p)} PASS_TO_PASS", flush=True)
    (root / "instances.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    if (root / "instances.jsonl").is_file():
        return
    shutil.rmtree(root, ignore_errors=True)
    print(f"swe_corpus: building {root} from PyPI sdists (django, sympy, flask; 2-4 min)", flush=True)
    build(root)


if __name__ == "__main__":
    main()
