"""pid 1 of a long-lived sandbox ("slot"): starts the agent's shells, answers `runtests`, verifies.

One slot serves many episodes in turn. Between episodes it kills every other process in its pid namespace and wipes
/tmp, and the host replaces the workspace, so an episode starts as clean as in a fresh sandbox, without paying for a
new interpreter and a cold pytest import each time (~0.3 s of CPU). Agent code only ever runs in forked children
or in the shell; this process is pid 1 (signals from inside the namespace cannot kill it) and not dumpable (it cannot
be ptraced, nor its control pipe read through /proc).

It is also the watchdog. The agent runs as root, for whom the kernel enforces no process limit (RLIMIT_NPROC), and
per-process memory limits do not add up; so every 50 ms this process counts the tasks (processes and threads) and
the resident memory of the whole namespace, and past either limit kills everything and says why in the output.

Control protocol (host <-> this process, on stdin/stdout, one JSON object per line):
  {"op": "reset"}        kill all, wipe /tmp; the host then loads the next workspace
  {"op": "shell"}        kill all, start a fresh bash on the shell pipes (cwd /workspace)
  {"op": "verify", ...}  kill all, then testserver.verify_request
Stdlib + pytest only; runs under the sandbox's Python.
"""
import errno
import json
import os
import re
import select
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testserver  # noqa: E402
from accounting import LIBC, Meter, remove_ipc, usage  # noqa: E402

AGENT = "/tmp/.oec"
SCRATCH = ("/tmp", "/run", "/dev/shm")
WATCH_EVERY = 0.05


def mount_points():
    """Every mount point in this namespace (mountinfo's fifth field, with its octal escapes undone)."""
    with open("/proc/self/mountinfo") as f:
        return {re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4]) for line in f}


class Slot:
    def __init__(self, shell_in, shell_out, max_tasks, max_memory, max_files, meter=None, alarm=-1):
        self.shell_in, self.shell_out = shell_in, shell_out
        # With a cgroup its hard limit is MAX_MEMORY, which the kernel enforces by killing; the watchdog acts a
        # margin below it (as oec/env/sandbox/cgroup.py's margin), woken by ALARM (an eventfd) when usage crosses.
        self.meter, self.alarm = meter, alarm
        self.kill_at = max_memory - min(64 << 20, max_memory // 8) if meter else max_memory
        self.oom_seen = meter.oom_kills() if meter else 0
        self.max_tasks, self.max_memory, self.max_files = max_tasks, max_memory, max_files
        self.next_watch = 0.0
        self.secret = os.urandom(8).hex()  # in the shell-exit line, so the agent cannot fake one
        self.dev = set(os.listdir("/dev"))  # what bwrap put there; anything else is the agent's
        self.mounts = mount_points()  # bwrap's binds (a venv under /tmp, say): the agent cannot add any
        self._keep = None
        self.bash = None
        self.runs = {}  # report fd -> (child pid, chunks, reply FIFO) for the agent's runtests
        self.replies = []  # (reply FIFO, fd or None, bytes left, deadline) not yet taken by their client
        self.req = None
        self.sig_r, sig_w = os.pipe()
        os.set_blocking(sig_w, False)
        signal.set_wakeup_fd(sig_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)

    # -- processes -----------------------------------------------------------------------------------------------
    def reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.bash:
                self.bash = None
                code = os.waitstatus_to_exitcode(status)
                os.write(self.shell_out, f"\036EXIT {self.secret} {code}\n".encode())

    @staticmethod
    def alone():
        """Whether this process is the only one in the namespace (as its init, it is every other's ancestor)."""
        return not any(p.isdigit() and p != "1" for p in os.listdir("/proc"))

    def kill_all(self):
        """Every process but this one dies: the agent's shell, its background jobs, test runs."""
        self.bash = None
        for _ in range(50):
            if self.alone():
                break
            # kill(-1) from a namespace's init reaches every other process in it at once, and the kernel makes
            # a fork racing with it fail, so a fork bomb cannot outrun it the way it outruns a pid-by-pid loop
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap_all()
        remove_ipc()
        for fd in list(self.runs):
            os.close(fd)
        self.runs.clear()
        for _, fd, _, _ in self.replies:
            if fd is not None:
                os.close(fd)
        self.replies = []
        os.set_blocking(self.shell_in, False)  # commands written for a shell that is gone must not reach the next
        try:
            while os.read(self.shell_in, 65536):
                pass
        except BlockingIOError:
            pass
        os.set_blocking(self.shell_in, True)

    def _reap_all(self):
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                time.sleep(0.001)

    def over_limits(self):
        """Why the agent must be stopped now (its tasks or memory are over the limits), or None."""
        tasks, rss = usage(self.max_tasks, self.meter)
        if tasks > self.max_tasks:
            return f"{tasks} processes and threads were running; the limit is {self.max_tasks}"
        if rss > self.kill_at:
            return f"{rss / 2**30:.2f} GiB of memory was in use; the limit is {self.max_memory / 2**30:.2f} GiB"
        if self.meter and self.meter.oom_kills() > self.oom_seen:  # the kernel acted before this watchdog did
            self.oom_seen = self.meter.oom_kills()
            return f"the kernel killed a process at the memory limit ({self.max_memory / 2**30:.2f} GiB)"
        return self.scratch_full()

    def scratch_full(self):
        """Why /tmp, /run or /dev/shm holds too many files, or None. They are size-capped tmpfs mounts, but bwrap
        cannot cap their inodes, and each costs kernel memory that no process's resident size shows."""
        for top in SCRATCH:
            st = os.statvfs(top)
            if st.f_files - st.f_ffree > self.max_files:
                return f"{top} held {st.f_files - st.f_ffree} files; the limit is {self.max_files}, so it was emptied"
        return None

    def watch(self):
        """Run the watchdog if it is due; return why it killed everything, or None."""
        now = time.monotonic()
        if now < self.next_watch:
            return None
        self.next_watch = now + WATCH_EVERY
        reason = self.over_limits()
        if reason is None:
            return None
        had_shell = self.bash is not None
        self.kill_all()
        if self.meter:  # a kernel kill during this one is part of it, not news at the next look
            self.oom_seen = self.meter.oom_kills()
        # files in /tmp, /run or /dev/shm would trip it again at once: too many of them, or (counted by the
        # cgroup) too much memory with no process left to hold it
        if self.scratch_full() or usage(self.max_tasks, self.meter)[1] > self.kill_at:
            self.wipe()
        note = f"\n[the sandbox killed every process: {reason}]\n"
        if had_shell:  # as if the shell had exited, so the host starts another
            note += f"\036EXIT {self.secret} 137\n"
        os.write(self.shell_out, note.encode())
        return reason

    def start_shell(self):
        pid = os.fork()
        if pid == 0:
            os.setsid()
            os.chdir("/workspace")
            os.dup2(self.shell_in, 0)
            os.dup2(self.shell_out, 1)
            os.dup2(self.shell_out, 2)
            os.closerange(3, 65536)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            testserver.limit_resources()
            os.execv("/bin/bash", ["bash", "--noprofile", "--norc"])  # the sandbox env, set by bwrap
        self.bash = pid

    def wipe(self):
        for fd in (self.req, self._keep):
            if fd is not None:
                os.close(fd)
        self.req = self._keep = None
        for top in SCRATCH + ("/dev",):
            if not os.path.isdir(top):
                continue
            for name in os.listdir(top):
                if top == "/dev" and name in self.dev:
                    continue
                self.remove(os.path.join(top, name))
        os.makedirs(AGENT)
        os.mkfifo(f"{AGENT}/req")
        self.req = os.open(f"{AGENT}/req", os.O_RDONLY | os.O_NONBLOCK)
        self._keep = os.open(f"{AGENT}/req", os.O_WRONLY)  # so select does not see EOF between clients

    def remove(self, path):
        """PATH and all below it, except bwrap's read-only binds: rmtree would walk a bound venv under /tmp and fail
        on every file (0.25 s a reset); the directories bwrap made to hold a bind are emptied, not removed."""
        if path in self.mounts:
            return
        if os.path.isdir(path) and not os.path.islink(path):
            if any(m.startswith(path + "/") for m in self.mounts):
                for name in os.listdir(path):
                    self.remove(os.path.join(path, name))
            else:
                shutil.rmtree(path, ignore_errors=True)
            return
        try:
            os.unlink(path)
        except OSError:
            pass

    # -- the agent's runtests ------------------------------------------------------------------------------------
    def on_request(self):
        """Each `runtests` call names its own directory (its arguments, NUL-separated, and its reply FIFO), so a
        killed or slow client never gets, or leaves, another call's answer."""
        try:
            data = os.read(self.req, 65536)
        except BlockingIOError:
            return
        for line in data.decode(errors="replace").splitlines():
            if not line.startswith(AGENT + "/r."):
                continue
            try:
                with open(os.path.join(line, "args"), "rb") as f:
                    cwd, *args = f.read().decode(errors="replace").split("\0")[:-1]
            except (OSError, ValueError):
                continue
            pid, fd = testserver.fork_pytest(cwd, args, as_json=False)
            self.runs[fd] = (pid, [], os.path.join(line, "resp"))

    def on_report(self, fd):
        chunk = os.read(fd, 65536)
        if chunk:
            self.runs[fd][1].append(chunk)
            return
        _, chunks, resp = self.runs.pop(fd)
        os.close(fd)
        self.respond(resp, b"".join(chunks))

    def respond(self, path, data):
        self.replies.append((path, None, data, time.monotonic() + 5))
        self.flush_replies()

    def flush_replies(self):
        """Write what each client can take now, never blocking: a client that never opens its FIFO, or stops
        reading it, must not stall this loop (and with it the watchdog); it gets 5 s, then its reply is dropped."""
        now, pending = time.monotonic(), []
        for path, fd, data, deadline in self.replies:
            try:
                if fd is None:
                    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                while data:
                    data = data[os.write(fd, data[:65536]) :]
            except BlockingIOError:  # its pipe is full: more later
                pass
            except OSError as e:  # ENXIO: not opened for reading yet; anything else: the client went away
                if not (fd is None and e.errno in (errno.ENXIO, errno.ENOENT)):
                    data = b""
            if data and now < deadline:
                pending.append((path, fd, data, deadline))
            elif fd is not None:
                os.close(fd)
        self.replies = pending

    # -- control -------------------------------------------------------------------------------------------------
    def on_control(self, line):
        req = json.loads(line)
        op = req["op"]
        try:
            if op == "reset":
                self.kill_all()
                self.wipe()
                reply = {"ok": True}
            elif op == "shell":
                self.kill_all()
                self.start_shell()
                reply = {"ok": True}
            elif op == "verify":
                self.kill_all()
                reply = testserver.verify_request(req, self.kill_all, self.over_limits)
                self.kill_all()
            else:
                reply = {"error": f"unknown op {op!r}"}
        except Exception as e:  # whatever the agent left behind, the slot answers and lives on
            reply = {"error": f"{op}: {e.__class__.__name__}: {e}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()

    def serve(self):
        ctl = sys.stdin
        while True:
            fds = [ctl, self.sig_r] + ([self.req] if self.req is not None else []) + list(self.runs)
            fds += [self.alarm] if self.alarm >= 0 else []
            # A slot alone in its namespace has nothing to watch, and only this loop can start a process there: it
            # sleeps until the host speaks instead of scanning /proc 20 times a second (1% of a core per idle slot,
            # and a pool keeps every slot it ever started). A live shell is enough to know it is busy, without a
            # second listing of /proc per tick beside the watchdog's.
            busy = self.runs or self.replies or self.bash is not None or not self.alone()
            try:
                ready = select.select(fds, [], [], WATCH_EVERY if busy else None)[0]
            except InterruptedError:
                continue
            if self.alarm in ready:  # the kernel says usage crossed the line: look now, not at the next tick
                os.read(self.alarm, 8)
                self.next_watch = 0.0
            self.watch()
            if self.replies:
                self.flush_replies()
            if self.sig_r in ready:
                os.read(self.sig_r, 4096)
                self.reap()
            for fd in ready:
                if fd in self.runs:
                    self.on_report(fd)
            if self.req is not None and self.req in ready:
                self.on_request()
            if ctl in ready:
                line = ctl.readline()
                if not line:
                    return  # the host is gone
                self.on_control(line)


def main():
    shell_in, shell_out, max_tasks, max_memory, max_files = map(int, sys.argv[1:6])
    meter = json.loads(sys.argv[6])  # the slot's memory cgroup's files and alarm fd; {} without one
    alarm = meter.pop("alarm", -1)
    LIBC.prctl(4, 0)  # PR_SET_DUMPABLE = 0
    # Signals from inside the namespace reach its init only where it has a handler, and Python installs one for
    # SIGINT: without this, `kill -INT 1` would end the sandbox. Children put the default back.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    testserver.warm_up()
    slot = Slot(shell_in, shell_out, max_tasks, max_memory, max_files, Meter(**meter) if meter else None, alarm)
    slot.wipe()
    sys.stdout.write(json.dumps({"ready": True, "secret": slot.secret}) + "\n")
    sys.stdout.flush()
    slot.serve()


if __name__ == "__main__":
    main()
