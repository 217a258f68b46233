"""bubblewrap command lines: what the agent's processes can see.

The sandbox gets a read-only view of the system (/usr, /etc, the Python that runs the tests), a private /tmp, no
network, its own pid namespace (so killing its first process kills everything it started), and an environment built
from scratch (no host variable, and so no API key, reaches it). The workspace is the only writable host directory and
is always mounted at the same path, so observations do not depend on where the host keeps its files.

The agent runs as root without capabilities (when the host runs as root). File permissions alone then let it write
anything it can see, so everything it can see that is not its own is mounted read-only or hidden: /proc/sys (as root,
`kernel.core_pattern` would run a program of its choice on the host), /dev, secret files under /etc. Every
writable mount is size-capped memory except the workspace. tests/test_hostile.py tries the ways out.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

from oec.core.errors import InputError, SandboxUnavailable

WORKSPACE = "/workspace"
TOOLS = "/oec/bin"
TOOLS_DIR = Path(__file__).parent / "tools"
TMP_BYTES = 1 << 30  # /tmp inside the sandbox is memory: cap it
SMALL_TMP_BYTES = 64 << 20  # /run and /dev/shm
# Kernel interfaces under /proc that root could write to (bwrap covers these only when the directory itself is
# writable, which /proc/sys never is: its files are) ...
PROC_READ_ONLY = ("sys", "sysrq-trigger", "irq", "bus", "fs", "acpi", "scsi", "driver")
# ... and files that tell about the host's processes, timers and keys
PROC_HIDDEN = ("kcore", "keys", "key-users", "timer_list", "sched_debug", "latency_stats", "kallsyms", "kmsg",
               "slabinfo")
# Host secrets that are readable by uid 0 without any capability
ETC_SECRETS = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/ssh/ssh_host_*key",
               "/etc/ssl/private", "/etc/sudoers", "/etc/sudoers.d")


@cache
def bwrap_path() -> str:
    """The bwrap binary, after checking once that it can actually create a sandbox here."""
    path = shutil.which("bwrap")
    if path is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed; it is the sandbox every agent command runs in. "
            "Install it with `apt-get install bubblewrap` (or `make install`, which tries that for you)."
        )
    probe = subprocess.run([path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid",
                            "--unshare-net", "--", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise SandboxUnavailable(
            f"bubblewrap cannot create a sandbox on this machine: {probe.stderr.strip()}. It needs unprivileged user "
            "namespaces (sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces > 0) or root; inside "
            "a container, run it with --privileged or a seccomp profile that allows unshare."
        )
    return path


@cache
def python_prefixes(python: str) -> tuple[str, ...]:
    """Real paths of PYTHON's environment (its prefix, base prefix, and where its executable lives), asked of the
    interpreter itself; InputError when it cannot run."""
    code = "import sys, os; print(sys.prefix); print(sys.base_prefix); print(os.path.realpath(sys.executable))"
    try:
        out = subprocess.run([python, "-I", "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise InputError(f"env.python={python}: cannot run it ({e}); give the python of a venv with the task's "
                         "dependencies (docs/tasks.md)") from None
    prefix, base, exe = out.split("\n")[:3]
    return tuple(sorted({os.path.realpath(prefix), os.path.realpath(base), os.path.dirname(os.path.dirname(exe))}))


def _python_dirs(python: str | None) -> list[str]:
    """Real paths of oec's interpreter and environment (the sandbox's init runs on it) and of PYTHON's, where the
    task's tests and the agent's `python` run."""
    dirs = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix),
            os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))}
    if python is not None:
        dirs |= set(python_prefixes(python))
    return sorted(d for d in dirs if not d.startswith("/usr"))


def _hide_secrets() -> list[str]:
    argv = []
    for pattern in ETC_SECRETS:
        for path in sorted(glob.glob(pattern)):
            if os.path.isdir(path) and not os.path.islink(path):
                argv += ["--tmpfs", path, "--remount-ro", path]
            elif os.path.isfile(path):
                argv += ["--ro-bind", "/dev/null", path]
    return argv


def _harden_proc() -> list[str]:
    """Read-only or empty views over the writable and the telling parts of the sandbox's /proc.

    The source of a bind is looked up on the host, but /proc/sys answers for the namespaces of whoever reads it, so
    the sandbox still sees its own hostname and network settings.
    """
    argv = []
    for name in PROC_READ_ONLY:
        if os.path.exists(f"/proc/{name}"):
            argv += ["--ro-bind", f"/proc/{name}", f"/proc/{name}"]
    for name in PROC_HIDDEN:
        if os.path.isfile(f"/proc/{name}"):
            argv += ["--ro-bind", "/dev/null", f"/proc/{name}"]
    return argv


def sandbox_env(python: str | None = None) -> dict[str, str]:
    """The sandbox's whole environment; PYTHON's directory (else oec's interpreter's) first on PATH."""
    bin_dir = os.path.dirname(os.path.abspath(python or sys.executable))
    return {
        "PATH": f"{TOOLS}:{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "PAGER": "cat",
        "GIT_PAGER": "cat",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        "GIT_CONFIG_NOSYSTEM": "1",
    }


def bwrap_argv(workspace: Path, command: list[str], extra_binds: dict[str, str] | None = None,
               as_pid_1: bool = False, seccomp_fd: int | None = None, python: str | None = None,
               tmp_bytes: int = TMP_BYTES) -> list[str]:
    """The full argv that runs COMMAND inside a fresh sandbox over WORKSPACE (with the seccomp filter read from
    SECCOMP_FD, which the caller passes to bwrap: see seccomp.py), PYTHON's environment visible and first on PATH."""
    # --cap-drop ALL: run as root, bwrap would otherwise leave the agent every capability (mount, ptrace, ...)
    argv = [bwrap_path(), "--die-with-parent", "--new-session", "--clearenv", "--cap-drop", "ALL"]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    argv += ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", "sandbox"]
    if as_pid_1:  # COMMAND is the namespace's init: signals from inside cannot kill it
        argv += ["--as-pid-1"]
    for top in ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64", "/lib32"):
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    argv += _hide_secrets()
    # scratch mounts first: a later bind (a venv under /tmp, say) must land on top of them, not under
    argv += ["--proc", "/proc"] + _harden_proc()
    # bwrap's /dev is an uncapped tmpfs (half the host's memory): make it read-only, with a small /dev/shm
    argv += ["--dev", "/dev", "--size", str(SMALL_TMP_BYTES), "--tmpfs", "/dev/shm"]
    # POSIX message queues of the slot's own IPC namespace, mounted so that the slot can list and remove them
    argv += ["--mqueue", "/dev/mqueue"]
    argv += ["--size", str(tmp_bytes), "--tmpfs", "/tmp", "--size", str(SMALL_TMP_BYTES), "--tmpfs", "/run"]
    for d in _python_dirs(python):
        argv += ["--ro-bind", d, d]
    argv += ["--ro-bind", str(TOOLS_DIR), TOOLS]
    for host, inside in (extra_binds or {}).items():
        argv += ["--ro-bind", host, inside]
    argv += ["--bind", str(workspace), WORKSPACE, "--chdir", WORKSPACE]
    argv += ["--remount-ro", "/"]  # the root bwrap builds is a tmpfs: without this, files there outlive episodes
    argv += ["--remount-ro", "/dev"]
    for k, v in sandbox_env(python).items():
        argv += ["--setenv", k, v]
    return argv + ["--"] + command
