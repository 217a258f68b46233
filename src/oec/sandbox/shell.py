"""A persistent bash session inside bubblewrap.

Each command is written to a file that the shell `source`s, so `cd` and `export` persist between commands, an
unbalanced quote is a bash error instead of a hung shell, and the command cannot read our protocol from stdin.
The end of its output is marked by a random nonce the agent cannot guess. A command that runs past its timeout
takes the whole sandbox down with it (the pid namespace dies with its first process) and a fresh shell is started;
the observation says so.
"""

from __future__ import annotations

import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from oec.sandbox.bwrap import TOOLS, bwrap_argv

IO = "/oec/io"
# Started before the first command: imports pytest so `runtests` answers in tens of milliseconds.
INIT = f"(exec python3 -I {TOOLS}/testserver.py serve /tmp/.oec </dev/null >/dev/null 2>&1 &)\nmkdir -p /tmp/.oec\n"


@dataclass(frozen=True)
class CommandResult:
    output: str
    returncode: int | None
    timed_out: bool = False
    truncated: bool = False
    restarted: bool = False


def cap_output(head: bytes, tail: bytes, total: int, limit: int) -> tuple[str, bool]:
    """Keep the head and tail of long output and say how much was cut, so the agent knows to narrow its command.

    HEAD and TAIL are the first and last bytes of a stream of TOTAL bytes; they are contiguous when the stream
    was short enough to be kept whole.
    """
    if total <= limit:
        return (head + tail).decode(errors="replace"), False
    whole = len(head) + len(tail) == total
    half = limit // 2
    first = (head + tail)[:half] if whole else head[:half]
    last = (head + tail)[-half:] if whole else tail[-half:]
    note = f"\n[... output truncated: {total} bytes in all; showing the first and last {half} ...]\n"
    return first.decode(errors="replace") + note + last.decode(errors="replace"), True


class PersistentShell:
    def __init__(self, workspace: Path, timeout: float = 10.0, output_limit: int = 2000):
        self.workspace = workspace
        self.timeout = timeout
        self.output_limit = output_limit
        self._io = Path(tempfile.mkdtemp(prefix="oec-io-"))
        self._proc: subprocess.Popen | None = None
        self._start()

    def _start(self) -> None:
        argv = bwrap_argv(self.workspace, ["bash", "--noprofile", "--norc"], extra_binds={str(self._io): IO})
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.run(INIT, timeout=30.0)

    def _kill(self) -> None:
        if self._proc is None:
            return
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._proc.wait()
        for f in (self._proc.stdin, self._proc.stdout):
            f.close()
        self._proc = None

    def close(self) -> None:
        self._kill()
        shutil.rmtree(self._io, ignore_errors=True)

    def run(self, command: str, timeout: float | None = None) -> CommandResult:
        timeout = self.timeout if timeout is None else timeout
        if self._proc is None:
            self._start()
        nonce = secrets.token_hex(8)
        (self._io / "cmd.sh").write_text(command + "\n")
        # \036 (record separator) + nonce marks the end; the exit code follows it.
        wrapper = f"source {IO}/cmd.sh </dev/null 2>&1; printf '\\036{nonce} %d\\n' $?\n"
        marker = f"\036{nonce} ".encode()
        try:
            self._proc.stdin.write(wrapper.encode())
            self._proc.stdin.flush()
        except BrokenPipeError:
            self._kill()
            return CommandResult("the shell had exited; a new shell was started", None, restarted=True)
        return self._read(marker, timeout)

    def _read(self, marker: bytes, timeout: float) -> CommandResult:
        fd = self._proc.stdout.fileno()
        keep = self.output_limit + 64  # only this much of the head and of the tail can ever be shown
        head, tail, total = bytearray(), bytearray(), 0
        end = re.compile(re.escape(marker) + rb"(-?\d+)\n$")
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self._kill()
                text, trunc = cap_output(bytes(head), bytes(tail), total, self.output_limit)
                note = f"\n[command timed out after {timeout:g}s and was killed; a fresh shell was started: cwd and variables were reset]"
                return CommandResult(text + note, None, timed_out=True, truncated=trunc, restarted=True)
            chunk = os.read(fd, 65536)
            if not chunk:  # the shell itself exited (`exit`, `exec`, a killed sandbox)
                rc = self._proc.wait()
                self._kill()
                text, trunc = cap_output(bytes(head), bytes(tail), total, self.output_limit)
                note = f"\n[the shell exited with code {rc}; a fresh shell was started: cwd and variables were reset]"
                return CommandResult(text + note, rc, truncated=trunc, restarted=True)
            total += len(chunk)
            room = keep - len(head)
            head += chunk[:room]
            tail += chunk[room:] if room > 0 else chunk
            del tail[:-keep]
            m = end.search(bytes(head + tail)[-len(marker) - 16 :])
            if m:
                cut = len(m.group(0))
                if len(tail) >= cut:
                    del tail[-cut:]
                else:
                    del head[len(head) - (cut - len(tail)) :]
                    tail.clear()
                text, trunc = cap_output(bytes(head), bytes(tail), total - cut, self.output_limit)
                return CommandResult(text, int(m.group(1)), truncated=trunc)
