"""Sandbox slots: a long-lived bubblewrap sandbox with a persistent bash inside, reused episode after episode.

The slot's first process is `tools/slotd.py` (see its docstring). Each command is written to a file that bash
`source`s, so `cd` and `export` persist between commands, an unbalanced quote is a bash error instead of a hung
shell, and the command cannot read our protocol from stdin. The end of its output is marked by a random nonce the
agent cannot guess. A command that runs past its timeout, or streams more than MAX_STREAM bytes, is killed with
everything the agent started, and a fresh shell is started; the observation says so.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path

from oec.core.errors import SandboxError
from oec.core.protocols import CommandResult
from oec.env.sandbox import cgroup, seccomp
from oec.env.sandbox.bwrap import TOOLS, bwrap_argv, bwrap_path
from oec.env.sandbox.limits import Limits, can_cap_workspace, capped_workspace
from oec.env.sandbox.tempdirs import clear_dir, owned_tempdir, remove_tree

IO = "/oec/io"
CGROUP = "/oec/cgroup"  # the slot's memory cgroup, read-only, where its watchdog reads the usage (cgroup.py)
MAX_STREAM = 64 << 20  # output bytes read before a command is killed: past this it only burns CPU on both sides


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


class _Spawner:
    """Starts sandboxes from one long-lived thread.

    bwrap's --die-with-parent uses PR_SET_PDEATHSIG, which fires when the *thread* that started it exits; pooled slots
    outlive the worker threads that first asked for them, so no worker thread may be their parent.
    """

    def __init__(self):
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._loop, daemon=True, name="oec-sandbox-spawner").start()

    def _loop(self) -> None:
        while True:
            args, kwargs, fut = self._queue.get()
            try:
                fut.set_result(subprocess.Popen(*args, **kwargs))
            except BaseException as e:  # handed to the caller, who raises it
                fut.set_exception(e)

    def popen(self, *args, **kwargs) -> subprocess.Popen:
        fut: Future = Future()
        self._queue.put((args, kwargs, fut))
        return fut.result()


_spawner_lock = threading.Lock()
_spawner: _Spawner | None = None


def _popen(*args, **kwargs) -> subprocess.Popen:
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = _Spawner()
    return _spawner.popen(*args, **kwargs)


class Slot:
    """One sandbox. `workspace` (host path) is mounted at /workspace; `load` replaces its contents."""

    def __init__(self, workspace: Path | None = None, limits: Limits = Limits()):
        bwrap_path()  # fails with instructions before anything is created
        self.limits = limits
        self._dir = owned_tempdir("slot")
        self.workspace = workspace or self._dir / "ws"
        self.workspace.mkdir(exist_ok=True)
        self._io = self._dir / "io"
        self._io.mkdir()
        shell_in_r, self._shell_in = os.pipe()
        self._shell_out, shell_out_w = os.pipe()
        capped = workspace is None and can_cap_workspace()  # a directory of the caller's stays as it is
        memory, self._cgroup, alarm = cgroup.controller(), None, None
        if memory:
            # The kernel enforces the limit itself; the memory filesystems (/tmp, /run, /dev/shm, the workspace) are
            # capped well inside it (Limits), so their files alone can never fill the group.
            try:
                self._cgroup = memory.new_group(limits.memory)
                alarm = memory.alarm(self._cgroup, limits.memory - cgroup.margin(limits.memory))
            except OSError:  # a controller that worked at the probe and fails now: fall back, as without one
                memory = None
        binds, meter = {str(self._io): IO}, {}
        if memory and self._cgroup:
            binds[str(self._cgroup)] = CGROUP
            meter = {**memory.meter(), "alarm": -1 if alarm is None else alarm}
        # the init runs on the task's interpreter, so that pytest runs there too (stdlib only; pytest if present)
        slotd = [limits.python or sys.executable, "-I", f"{TOOLS}/slotd.py", str(shell_in_r), str(shell_out_w),
                 str(limits.tasks), str(limits.memory), str(limits.files), json.dumps(meter)]
        filter_fd = seccomp.filter_fd(deny_memfd=memory is None)
        argv = bwrap_argv(self.workspace, slotd, extra_binds=binds, as_pid_1=True, seccomp_fd=filter_fd,
                          python=limits.python, tmp_bytes=limits.tmp)
        if capped:
            argv = capped_workspace(self.workspace, limits) + argv
        if self._cgroup:
            # The first process joins the group before it starts anything, so every descendant is in it; and it
            # (bwrap, then the sandbox's init) is the last the kernel's out-of-memory kill at the group's limit may
            # pick (this needs root, as the group does): the agent's processes are first (oom_score_adj 1000), and
            # an init killed there would end the slot mid-episode.
            join = 'echo -1000 > /proc/self/oom_score_adj 2>/dev/null; echo $$ > "$1" && shift && exec "$@"'
            argv = ["sh", "-c", join, "sh", str(self._cgroup / "cgroup.procs"), *argv]
        try:
            with (self._dir / "stderr").open("w") as err:
                self._proc = _popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                                    pass_fds=(shell_in_r, shell_out_w, filter_fd, *([alarm] if alarm else [])),
                                    start_new_session=True)
        finally:
            os.close(filter_fd)
            if alarm is not None:
                os.close(alarm)
        os.close(shell_in_r)
        os.close(shell_out_w)
        if capped:  # the tmpfs is in the sandbox's mount namespace: the host reaches it through the process's root
            self.workspace = Path(f"/proc/{self._proc.pid}/root") / self.workspace.relative_to("/")
        self.alive = True
        ready = self._control_reply("starting the sandbox", 120)
        self._exited = re.compile(rb"\036EXIT " + ready["secret"].encode() + rb" (-?\d+)\n")

    # -- control -------------------------------------------------------------------------------------------------
    def _control_reply(self, what: str, timeout: float) -> dict:
        ready = select.select([self._proc.stdout], [], [], timeout)[0]
        line = self._proc.stdout.readline() if ready else ""
        if not line:
            try:
                detail = (self._dir / "stderr").read_text().strip().splitlines()[-1:]
            except OSError:
                detail = []
            self.close()
            state = "died" if self._proc.poll() is not None else f"did not answer within {timeout:g}s"
            raise SandboxError(f"the sandbox {state} while {what}{': ' + detail[0] if detail else ''}")
        reply = json.loads(line)
        if "error" in reply:
            raise SandboxError(f"the sandbox failed at {what}: {reply['error']}")
        return reply

    def control(self, op: str, timeout: float = 60.0, **kw) -> dict:
        if not self.alive:
            raise SandboxError("this sandbox was closed")
        try:
            self._proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            self.close()
            raise SandboxError(f"the sandbox died before {op!r}") from None
        return self._control_reply(op, timeout)

    def load(self, template: Path) -> None:
        """Start an episode: nothing of the last one survives (processes, /tmp, workspace)."""
        self.control("reset")
        clear_dir(self.workspace)
        try:
            shutil.copytree(template, self.workspace, symlinks=True, dirs_exist_ok=True)
        except (OSError, shutil.Error) as e:
            if "No space left" not in str(e):
                raise
            raise SandboxError(f"the task's repository does not fit the sandbox's workspace quota "
                               f"({self.limits.disk >> 20} MiB, {self.limits.files} files); raise env.disk_mb or "
                               "env.max_files") from None
        self._drain()
        self.control("shell")

    def _drain(self) -> None:
        while select.select([self._shell_out], [], [], 0)[0]:
            if not os.read(self._shell_out, 65536):
                break

    def close(self) -> None:
        if not self.alive:
            return
        self.alive = False
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._proc.wait()
        for f in (self._proc.stdin, self._proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        for fd in (self._shell_in, self._shell_out):
            os.close(fd)
        remove_tree(self._dir)
        if self._cgroup:
            cgroup.remove(self._cgroup)

    # -- the shell -----------------------------------------------------------------------------------------------
    def run(self, command: str, timeout: float, output_limit: int) -> CommandResult:
        nonce = secrets.token_hex(8)
        (self._io / "cmd.sh").write_text(command + "\n")
        # \036 (record separator) + nonce marks the end; the exit code follows it.
        wrapper = f"source {IO}/cmd.sh </dev/null 2>&1; printf '\\036{nonce} %d\\n' $?\n"
        os.write(self._shell_in, wrapper.encode())
        return self._read(f"\036{nonce} ".encode(), timeout, output_limit)

    def _read(self, marker: bytes, timeout: float, limit: int) -> CommandResult:
        fd = self._shell_out
        keep = limit + 64  # only this much of the head and of the tail can ever be shown
        head, tail, total = bytearray(), bytearray(), 0
        end = re.compile(re.escape(marker) + rb"(-?\d+)\n$")
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            flood = total > MAX_STREAM
            if flood or left <= 0 or not select.select([fd], [], [], left)[0]:
                self.control("shell")  # kills the command and everything the agent started
                self._drain()
                text, trunc = cap_output(bytes(head), bytes(tail), total, limit)
                why = f"printed more than {MAX_STREAM >> 20} MiB" if flood else f"timed out after {timeout:g}s"
                note = f"\n[command {why} and was killed; a fresh shell was started: cwd and variables were reset]"
                return CommandResult(text + note, None, timed_out=not flood, truncated=trunc, restarted=True)
            chunk = os.read(fd, 65536)
            if not chunk:  # only the slot's init holds the write end: the sandbox itself is gone
                self.close()
                raise SandboxError("the sandbox died during the command")
            total += len(chunk)
            room = keep - len(head)
            head += chunk[:room]
            tail += chunk[room:] if room > 0 else chunk
            del tail[:-keep]
            last = bytes(head + tail)[-len(marker) - 16 :]
            m = end.search(last)
            gone = None if m else self._exited.search(last)
            if not (m or gone):
                continue
            cut = len((m or gone).group(0))
            if len(tail) >= cut:
                del tail[-cut:]
            else:
                del head[len(head) - (cut - len(tail)) :]
                tail.clear()
            text, trunc = cap_output(bytes(head), bytes(tail), total - cut, limit)
            if m:
                return CommandResult(text, int(m.group(1)), truncated=trunc)
            # the shell itself exited (`exit`, `exec`): start another
            self.control("shell")
            self._drain()
            rc = int(gone.group(1))
            note = f"\n[the shell exited with code {rc}; a fresh shell was started: cwd and variables were reset]"
            return CommandResult(text + note, rc, truncated=trunc, restarted=True)


class SlotPool:
    """Idle slots kept for the next episode. Thread-safe; grows to as many slots as episodes run at once."""

    def __init__(self, limits: Limits = Limits()):
        self.limits = limits
        self._idle: list[Slot] = []
        self._lock = threading.Lock()

    def acquire(self) -> Slot:
        with self._lock:
            while self._idle:
                slot = self._idle.pop()
                if slot.alive and slot._proc.poll() is None:
                    return slot
                slot.close()
        return Slot(limits=self.limits)

    def release(self, slot: Slot) -> None:
        """Back to the pool, with everything the episode started already killed (an idle slot runs nothing)."""
        if not slot.alive:
            return
        try:
            slot.control("reset")
        except SandboxError:
            slot.close()
            return
        with self._lock:
            self._idle.append(slot)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for slot in idle:
            slot.close()


_pools: dict[Limits, SlotPool] = {}
_pools_lock = threading.Lock()


def pool_for(limits: Limits) -> SlotPool:
    """The process-wide pool of slots with these limits (slots cannot change their limits once started)."""
    with _pools_lock:
        if limits not in _pools:
            _pools[limits] = SlotPool(limits)
        return _pools[limits]


@atexit.register
def _close_pools() -> None:  # the sandboxes would die with us anyway; this also removes their temp dirs
    for pool in list(_pools.values()):
        pool.close()


POOL = pool_for(Limits())


class PersistentShell:
    """A sandboxed shell over a directory of your choice (one private slot)."""

    def __init__(self, workspace: Path, timeout: float = 10.0, output_limit: int = 2000, limits: Limits = Limits()):
        self.timeout, self.output_limit = timeout, output_limit
        self.slot = Slot(Path(workspace), limits)
        self.slot.control("reset")
        self.slot.control("shell")

    def run(self, command: str, timeout: float | None = None) -> CommandResult:
        return self.slot.run(command, self.timeout if timeout is None else timeout, self.output_limit)

    def close(self) -> None:
        self.slot.close()
