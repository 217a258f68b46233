"""Every command of the README's cheat sheet names a verb the CLI has and only options that verb takes."""

import re
import shlex
from pathlib import Path

from typer.testing import CliRunner

from oec.cli import app

README = Path(__file__).parents[1] / "README.md"
SUBCOMMANDS = {"tasks", "student", "demos"}  # verb groups: `oec tasks generate ...`


def _commands() -> list[list[str]]:
    blocks = re.findall(r"^```bash\n(.*?)^```", README.read_text(), re.S | re.M)
    out = []
    for line in "\n".join(blocks).replace("\\\n", " ").splitlines():
        m = re.match(r"\s*(?:accelerate launch .*?-m )?oec\s+([a-z].*)", line)
        if m:
            out.append(shlex.split(m.group(1), comments=True))
    return out


def test_the_cheat_sheet_uses_only_verbs_and_options_that_exist():
    commands = _commands()
    assert len(commands) >= 40  # the sheet was found
    helps: dict[tuple, str] = {}
    for words in commands:
        verb = tuple(words[:2]) if words[0] in SUBCOMMANDS else (words[0],)
        if verb not in helps:
            r = CliRunner().invoke(app, [*verb, "--help"], terminal_width=200)
            assert r.exit_code == 0, (verb, r.output)
            helps[verb] = r.output
        for option in (w.split("=")[0] for w in words if w.startswith("--")):
            assert option in helps[verb], f"README: `oec {' '.join(words)}` uses {option}, which {verb} lacks"
