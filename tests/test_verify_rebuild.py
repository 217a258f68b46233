"""The verifier's host-side file work on a workspace an agent left, without a sandbox (the agent's state is made
here with plain file operations): the tree it tests is exactly the base plus the recorded patch, byte for byte,
whatever the file names, encodings and links; it writes nothing through a link; it empties a huge workspace in a
few processes."""

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from oec.env import nofollow
from oec.env.repos import template
from oec.env.sandbox.tempdirs import clear_dir
from oec.env.verify import diff, rebuild
from oec.tasks.toy import generate

# Names git or a shell could misread: pathspec magic, globs, quotes, newlines, bytes that are not UTF-8.
HOSTILE_NAMES = [":(exclude)*.py", ":(glob)**", "*", "[ab]", "!x", "#y", 'q"uote', "new\nline", "sp ace",
                 "back\\slash", os.fsdecode(b"latin-\xe9.txt"), "ütf8.py"]


def _tree(root: Path) -> dict[str, tuple[str, bytes]]:
    """Every file and link under ROOT but .git: (kind, content or target)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git" or dirpath != str(root)]
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                out[rel] = ("link", os.fsencode(os.readlink(path)))
            else:
                mode = "x" if os.stat(path).st_mode & stat.S_IXUSR else "f"
                out[rel] = (mode, Path(path).read_bytes())
    return out


@pytest.fixture
def base():
    return template(generate("train", 1, seed=11)[0])


def test_the_tested_tree_is_the_base_plus_the_recorded_patch_byte_for_byte(base, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(base.path, ws, symlinks=True)
    for i, name in enumerate(HOSTILE_NAMES):
        (ws / name).write_bytes(f"file {i}\n".encode())
    (ws / "blob.bin").write_bytes(bytes(range(256)))
    pkg = next(f for f in base.files if f.endswith(".py") and "test" not in f and "__init__" not in f)
    (ws / pkg).write_bytes(b"# -*- coding: latin-1 -*-\n# caf\xe9\n" + (ws / pkg).read_bytes())
    os.symlink("/etc/passwd", ws / "link-out")
    os.chmod(ws / "blob.bin", 0o755)
    agent = _tree(ws)
    change = diff(ws, base)
    patch = rebuild(ws, base, change)
    patch.encode("utf-8")  # text, whatever the files held
    tested = _tree(ws)
    assert {rel: tested[rel] for rel in change.kept} == {rel: agent[rel] for rel in change.kept}
    # the same patch on a clean copy of the base, by a plain `git apply`, gives the tested tree
    clean = tmp_path / "clean"
    shutil.copytree(base.path, clean, symlinks=True)
    subprocess.run(["git", "apply", "-"], cwd=clean, input=patch.encode(), check=True, capture_output=True)
    for rel, text in base.restore.items():
        (clean / rel).write_text(text)
    assert _tree(clean) == tested


def test_a_link_where_configuration_is_written_back_is_not_followed(base, tmp_path):
    ws, host = tmp_path / "ws", tmp_path / "host"
    host.mkdir()
    (host / "mine.txt").write_text("the host's\n")
    shutil.copytree(base.path, ws, symlinks=True)
    tests_dir = Path(base.tests and sorted(base.tests)[0]).parent
    shutil.rmtree(ws / tests_dir)
    os.symlink(host, ws / tests_dir)
    change = diff(ws, base)
    rebuild(ws, base, change)
    assert sorted(os.listdir(host)) == ["mine.txt"]
    assert (ws / tests_dir).is_dir() and not (ws / tests_dir).is_symlink()
    with pytest.raises(nofollow.LinkInTheWay):  # the writer itself refuses a link on the way
        os.symlink(host, ws / "elsewhere")
        nofollow.write_file(ws, "elsewhere/conftest.py", b"x")
    assert sorted(os.listdir(host)) == ["mine.txt"]


def test_a_workspace_of_many_entries_is_emptied_in_a_few_processes(tmp_path, monkeypatch):
    """An `rm` on PATH that logs each call and runs the real one (a test double of nothing but the count)."""
    ws, bin_dir, log = tmp_path / "ws", tmp_path / "bin", tmp_path / "calls"
    ws.mkdir()
    bin_dir.mkdir()
    rm = shutil.which("rm")
    (bin_dir / "rm").write_text(f"#!/bin/sh\necho x >> {log}\nexec {rm} \"$@\"\n")
    (bin_dir / "rm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    for i in range(20_000):
        (ws / f"{'n' * 100}{i}").touch()
    (ws / "locked").mkdir()
    (ws / "locked/inner").touch()
    (ws / "locked").chmod(0o500)
    os.symlink(tmp_path, ws / "up")
    clear_dir(ws)
    assert os.listdir(ws) == [] and tmp_path.exists() and ws.exists()
    assert len(log.read_text().split()) <= 2  # the directories: one call, and one more after opening one up
