"""The README and docs/ stay true to the code: every `oec` command they show names a verb the CLI has and only options
that verb takes, and every repository file they name exists."""

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from oec.cli import app

ROOT = Path(__file__).parents[1]
SUBCOMMANDS = {"tasks", "student", "demos"}  # verb groups: `oec tasks generate ...`
COMMAND = re.compile(r"\s*(?:\$ )?(?:accelerate launch .*?-m )?oec\s+([a-z].*)")


def _commands(text: str, inline: bool) -> list[list[str]]:
    """The `oec ...` lines of TEXT's shell blocks and, with INLINE, of its `oec ...` code spans."""
    blocks = re.findall(r"^```(?:bash|sh|console)?\n(.*?)^```", text, re.S | re.M)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    lines += re.findall(r"`(oec [^`]+)`", text) if inline else []
    return [shlex.split(m.group(1), comments=True) for m in map(COMMAND.match, lines) if m]


def _check(commands: list[list[str]], where: str) -> None:
    helps: dict[tuple, str] = {}
    for words in commands:
        verb = tuple(words[:2]) if words[0] in SUBCOMMANDS else (words[0],)
        if verb not in helps:
            r = CliRunner().invoke(app, [*verb, "--help"], terminal_width=200)
            assert r.exit_code == 0, f"{where}: `oec {' '.join(words)}`: no verb {' '.join(verb)}"
            helps[verb] = r.output
        for option in (w.split("=")[0] for w in words if w.startswith("--")):
            assert option in helps[verb], f"{where}: `oec {' '.join(words)}` uses {option}, which {verb} lacks"


def test_the_cheat_sheet_uses_only_verbs_and_options_that_exist():
    commands = _commands((ROOT / "README.md").read_text(), inline=False)
    assert len(commands) >= 40  # the sheet was found
    _check(commands, "README.md")


def test_the_docs_use_only_verbs_and_options_that_exist():
    pages = sorted((ROOT / "docs").glob("*.md"))
    found = {page.name: _commands(page.read_text(), inline=True) for page in pages}
    assert sum(map(len, found.values())) >= 80  # the docs' commands were found
    for name, commands in found.items():
        _check(commands, f"docs/{name}")


def test_the_files_the_readme_and_docs_name_exist():
    """Repository paths in code spans (`src/...`, `configs/...`) and relative links: a moved file leaves none stale."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    named = 0
    for page in pages:
        text = page.read_text()
        spans = re.findall(r"`((?:src|bench|scripts|configs|results|tests|docs)/[\w./-]+)`", text)
        links = [page.parent / link for link in re.findall(r"\]\(([a-z][\w./-]*)(?:#[\w-]+)?\)", text)]
        for path in [ROOT / s for s in spans] + links:
            named += 1
            assert path.exists(), f"{page.relative_to(ROOT)} names {path.relative_to(ROOT)}, which does not exist"
    assert named >= 50  # the names were found


def test_every_file_at_the_root_is_one_the_layout_names():
    """A stray file committed at the root (an empty `oom` once came back after being removed) fails here: each tracked
    root file is named in docs/layout.md's tree, or is a dotfile of git's."""
    import subprocess

    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    root_files = [f for f in tracked.splitlines() if "/" not in f and not f.startswith(".git")]
    layout = (ROOT / "docs/layout.md").read_text()
    assert [f for f in root_files if not re.search(rf"^{re.escape(f)}\s", layout, re.M)] == []


@pytest.mark.tools
def test_the_python_api_example_runs_as_written(tmp_path):
    """The README's Python API block, run as a script in an empty directory: the whole small pipeline, real
    sandbox, real training (it needs bubblewrap, as the pipeline does)."""
    import subprocess
    import sys

    readme = (ROOT / "README.md").read_text()
    code = readme.split("## Python API", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert lines[0].endswith(" kept") and int(lines[0].split()[0]) > 0
    assert float(lines[-1]) >= 0 and (tmp_path / "ckpt/oec").is_dir() and (tmp_path / "runs/eval").is_dir()


def test_the_source_cites_no_issue_numbers():
    """Comments say why, not which ticket: an issue number means nothing to a reader of the code."""
    cited = [f"{p.relative_to(ROOT)}:{i}" for p in sorted((ROOT / "src").rglob("*.py"))
             for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"\bissues? #?\d+", line, re.I)]
    assert cited == []


def test_the_demo_and_claims_run_times_agree_wherever_they_are_stated():
    """A number said in several places drifts: each is checked against the README's (measured) figure."""
    from oec.cli.main import demo

    demo_time = re.search(r"default \((\d+-\d+ min)\)", (ROOT / "README.md").read_text()).group(1)
    assert demo_time in (ROOT / "src/oec/assets/demo.yaml").read_text().splitlines()[0]
    assert demo_time in " ".join(demo.__doc__.split())
    readme = (ROOT / "README.md").read_text()
    claims_time = re.search(r"claims-cpu\.yaml` \(500 held-out tasks x 2 seeds, (\d+ min)", readme)
    assert claims_time and claims_time.group(1) in (ROOT / "docs/layout.md").read_text()
