"""What the slot's processes hold, for its watchdog (slotd.py), and the IPC objects it removes between episodes.

With a memory cgroup (oec/env/sandbox/cgroup.py, bound read-only at CGROUP) the kernel's own counts answer: the
bytes charged to the group (process memory, memfd, tmpfs files, SysV segments, pipe buffers, kernel objects) less
the page cache it can drop, and the threads in the group, read from two small files per look. Without one, every
process's stat is read for its threads and resident pages, and SysV IPC memory no process holds is added.
Stdlib only: this runs under the sandbox's Python.
"""
import ctypes
import os

CGROUP = "/oec/cgroup"
PAGE = os.sysconf("SC_PAGE_SIZE")
LIBC = ctypes.CDLL(None, use_errno=True)
IPC_RMID = 0


class Meter:
    """The slot's memory cgroup: USAGE (bytes charged), EVENTS (its `oom_kill` count), THREADS (one line per thread
    in the group) and CACHE (memory.stat keys of reclaimable page cache), file names under CGROUP."""

    def __init__(self, usage, events, threads, cache):
        self.usage, self.events, self.threads, self.cache = usage, events, threads, cache

    def _read(self, name):
        with open(os.path.join(CGROUP, name)) as f:
            return f.read()

    def bytes(self):
        stat = dict(line.split() for line in self._read("memory.stat").splitlines() if line.strip())
        return int(self._read(self.usage)) - sum(int(stat.get(k, 0)) for k in self.cache)

    def tasks(self):
        return self._read(self.threads).count("\n")

    def oom_kills(self):
        """How many processes the kernel has killed at the group's limit."""
        return next((int(line.split()[1]) for line in self._read(self.events).splitlines()
                     if line.startswith("oom_kill ")), 0)


def usage(max_tasks, meter=None):
    """(tasks, memory bytes) of the slot: METER's counts where it has a cgroup (its bwrap parent, outside the
    namespace, among the tasks), else every process's stat plus SysV IPC. Without a meter and past MAX_TASKS
    processes it answers at once, without reading each one's stat: under a fork bomb this process gets little CPU."""
    if meter is not None:
        return meter.tasks(), meter.bytes()
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    if len(pids) > max_tasks:
        return len(pids), 0
    tasks = rss = 0
    for name in pids:
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # gone since the listing
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()  # the command name may hold spaces and parentheses
        tasks += int(fields[17])  # num_threads
        rss += int(fields[21]) * PAGE
    return tasks, rss + ipc_bytes()


def sysvipc(kind):
    """Rows of /proc/sysvipc/KIND (shm, msg, sem) as {column: int}: the objects of this IPC namespace only."""
    try:
        with open(f"/proc/sysvipc/{kind}") as f:
            head, *rows = f.read().splitlines()
    except OSError:
        return []
    names = head.split()
    return [dict(zip(names, map(int, row.split()))) for row in rows]


def ipc_bytes():
    """Memory held by SysV IPC objects and not by any process: a detached shared memory segment or a queued
    message outlives its creator, so the resident sizes of processes alone would let it past the memory limit."""
    shm = sum(r.get("rss", r["size"]) + r.get("swap", 0) for r in sysvipc("shm") if r["nattch"] == 0)
    return shm + sum(r["cbytes"] for r in sysvipc("msg"))


def remove_ipc():
    """Remove every SysV IPC object and POSIX message queue of the slot, so none outlives the episode (the slot
    keeps its IPC namespace from one episode to the next)."""
    for r in sysvipc("shm"):
        LIBC.shmctl(r["shmid"], IPC_RMID, None)
    for r in sysvipc("msg"):
        LIBC.msgctl(r["msqid"], IPC_RMID, None)
    for r in sysvipc("sem"):
        LIBC.semctl(r["semid"], 0, IPC_RMID)
    if os.path.isdir("/dev/mqueue"):
        for name in os.listdir("/dev/mqueue"):
            try:
                os.unlink(os.path.join("/dev/mqueue", name))
            except OSError:
                pass
