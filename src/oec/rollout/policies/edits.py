"""The gold patch as the edits the scripted expert can make in a shell: one `edit` per hunk (each with the least
context that makes it unique), a whole file written for a file the patch creates, `rm` for one it deletes."""

from __future__ import annotations

import os
from dataclasses import dataclass

from oec.core.shell_facts import edit_command


@dataclass(frozen=True)
class Edit:
    """One step of the fix: replace OLD by NEW in PATH; or, for files the patch creates or deletes, write NEW whole
    (`create`) or remove the file (`delete`)."""

    path: str
    old: str
    new: str
    kind: str = "edit"

    def command(self) -> str:
        if self.kind == "create":
            return rewrite_command(self.path, self.new)
        if self.kind == "delete":
            return f"rm {self.path}"
        return edit_command(self.path, self.old, self.new)

    def applies(self, now: str | None) -> bool:
        """Whether this step is still to do when PATH holds NOW (None: no such file)."""
        if self.kind == "create":
            return now != self.new
        if self.kind == "delete":
            return now is not None
        return now is not None and now.count(self.old) == 1


def parse_patch(patch: str) -> dict[str, list[list[tuple[str, str]]]]:
    """Unified diff -> {path: [hunk, ...]}, a hunk being [(tag, line)] with tag in ' ', '-', '+'. A deleted file
    is keyed by its old path."""
    files: dict[str, list] = {}
    path, old_path, hunk = None, None, None
    for line in patch.splitlines():
        if line.startswith("+++ ") and hunk is None:
            path = line[4:].split("\t")[0].removeprefix("b/")
            if path == "/dev/null":
                path = old_path
            files.setdefault(path, [])
        elif line.startswith("--- ") and hunk is None or line.startswith("diff "):
            hunk = None
            if line.startswith("--- "):
                old_path = line[4:].split("\t")[0].removeprefix("a/")
        elif line.startswith("@@"):
            hunk = []
            files[path].append(hunk)
        elif hunk is not None and line[:1] in (" ", "-", "+"):
            hunk.append((line[0], line[1:]))
        elif hunk is not None and line == "":
            hunk.append((" ", ""))
    return files


def edits_from_patch(base: dict[str, str | None], patch: str) -> list[Edit]:
    """The gold patch as shell edits, each with the least context that makes its snippet unique in the file.
    BASE maps each path the patch touches to its base text (None or absent: the patch creates the file)."""
    edits = []
    status = file_status(patch)
    for path, hunks in parse_patch(patch).items():
        text = base.get(path)
        if status.get(path) == "create" or text is None:
            lines = [s for h in hunks for t, s in h if t != "-"]
            edits.append(Edit(path, "", "\n".join(lines) + "\n" if lines else "", kind="create"))
            continue
        if status.get(path) == "delete":
            edits.append(Edit(path, text, "", kind="delete"))
            continue
        for hunk in hunks:
            changed = [i for i, (tag, _) in enumerate(hunk) if tag != " "]
            lo, hi = changed[0], changed[-1] + 1
            while True:
                old = "\n".join(s for t, s in hunk[lo:hi] if t != "+")
                new = "\n".join(s for t, s in hunk[lo:hi] if t != "-")
                if old.strip() and text.count(old) == 1 or (lo == 0 and hi == len(hunk)):
                    break
                # grow towards the side with a non-blank line first: a bare blank line is rarely distinctive
                if lo > 0 and (hi == len(hunk) or hunk[lo - 1][1].strip()):
                    lo -= 1
                else:
                    hi += 1
            edits.append(Edit(path, old, new))
            text = text.replace(old, new, 1)
    return edits


def file_status(patch: str) -> dict[str, str]:
    """{path: 'create' | 'delete'} for the files PATCH creates or deletes (from its ---/+++ headers)."""
    out, old = {}, None
    for line in patch.splitlines():
        if line.startswith("--- "):
            old = line[4:].split("\t")[0]
        elif line.startswith("+++ ") and old is not None:
            new = line[4:].split("\t")[0]
            if old == "/dev/null":
                out[new.removeprefix("b/")] = "create"
            elif new == "/dev/null":
                out[old.removeprefix("a/")] = "delete"
            old = None
    return out


def rewrite_command(path: str, content: str) -> str:
    """Put a file back by writing it whole: the fallback when git cannot (no .git, a staged edit, a chmod)."""
    if not content:
        return f"chmod u+rw {path} 2>/dev/null; : > {path}"
    tail = "" if content.endswith("\n") else f" && truncate -s -1 {path}"
    body = content if content.endswith("\n") else content + "\n"
    parent = os.path.dirname(path)
    mkdir = f"mkdir -p {parent} && " if parent else ""
    return f"chmod u+rw {path} 2>/dev/null; {mkdir}cat > {path} <<'OEC_EOF'\n{body}OEC_EOF{tail}"
