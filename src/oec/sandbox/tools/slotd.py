"""pid 1 of a long-lived sandbox ("slot"): starts the agent's shells, answers `runtests`, verifies.

One slot serves many episodes in turn. Between episodes it kills every other process in its pid namespace and wipes
/tmp, and the host replaces the workspace, so an episode starts as clean as in a fresh sandbox, without paying for a
new interpreter and a cold pytest import each time (~0.3 s of CPU). Agent code only ever runs in forked children
or in the shell; this process is pid 1 (signals from inside the namespace cannot kill it) and not dumpable (it cannot
be ptraced, nor its control pipe read through /proc).

Control protocol (host <-> this process, on stdin/stdout, one JSON object per line):
  {"op": "reset"}        kill all, wipe /tmp; the host then loads the next workspace
  {"op": "shell"}        kill all, start a fresh bash on the shell pipes (cwd /workspace)
  {"op": "verify", ...}  kill all, then testserver.verify_request
Stdlib + pytest only; runs under the sandbox's Python.
"""
import ctypes
import errno
import json
import os
import shutil
import signal
import select
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testserver  # noqa: E402

AGENT = "/tmp/.oec"
SCRATCH = ("/tmp", "/run", "/dev/shm")


class Slot:
    def __init__(self, shell_in, shell_out):
        self.shell_in, self.shell_out = shell_in, shell_out
        self.secret = os.urandom(8).hex()  # in the shell-exit line, so the agent cannot fake one
        self.dev = set(os.listdir("/dev"))  # what bwrap put there; anything else is the agent's
        self._keep = None
        self.bash = None
        self.runs = {}  # report fd -> (child pid, chunks, reply FIFO) for the agent's runtests
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

    def kill_all(self):
        """Every process but this one dies: the agent's shell, its background jobs, test runs."""
        self.bash = None
        for _ in range(50):
            pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != 1]
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self._reap_all()
        for fd in list(self.runs):
            os.close(fd)
        self.runs.clear()
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
                path = os.path.join(top, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    try:
                        os.unlink(path)
                    except OSError:
                        pass
        os.makedirs(AGENT)
        os.mkfifo(f"{AGENT}/req")
        self.req = os.open(f"{AGENT}/req", os.O_RDONLY | os.O_NONBLOCK)
        self._keep = os.open(f"{AGENT}/req", os.O_WRONLY)  # so select does not see EOF between clients

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
        """Write DATA to the client's FIFO without ever blocking the slot on a client that stopped reading."""
        deadline = time.monotonic() + 5
        fd = None
        while fd is None and time.monotonic() < deadline:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as e:
                if e.errno not in (errno.ENXIO, errno.ENOENT):
                    return
                time.sleep(0.001)
        if fd is None:
            return
        try:
            while data and time.monotonic() < deadline:
                if select.select([], [fd], [], max(0.0, deadline - time.monotonic()))[1]:
                    data = data[os.write(fd, data[:65536]) :]
        except OSError:  # the client went away
            pass
        finally:
            os.close(fd)

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
                reply = testserver.verify_request(req, self.kill_all)
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
            try:
                ready = select.select(fds, [], [])[0]
            except InterruptedError:
                continue
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
    shell_in, shell_out = int(sys.argv[1]), int(sys.argv[2])
    ctypes.CDLL(None).prctl(4, 0)  # PR_SET_DUMPABLE = 0
    testserver.warm_up()
    slot = Slot(shell_in, shell_out)
    slot.wipe()
    sys.stdout.write(json.dumps({"ready": True, "secret": slot.secret}) + "\n")
    sys.stdout.flush()
    slot.serve()


if __name__ == "__main__":
    main()
