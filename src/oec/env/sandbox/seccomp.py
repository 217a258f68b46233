"""The sandbox's seccomp filter: system calls whose effects namespaces do not contain are refused with EPERM.

The kernel keyrings are not namespaced by anything bubblewrap unshares: root's user keyring is one for every process
of uid 0, so a key the agent adds outlives the episode (the next episode reads it) and a key the host added is
readable inside. `add_key`, `request_key` and `keyctl` are refused. Where no memory cgroup counts unmapped memory
(cgroup.py), `memfd_create` is refused too. bwrap takes the filter as a compiled classic-BPF program (`--seccomp FD`);
it is a dozen instructions, assembled here rather than pulling in libseccomp's bindings.
"""

from __future__ import annotations

import errno
import os
import platform
import struct

# struct seccomp_data: int nr; __u32 arch; ...
NR_OFFSET, ARCH_OFFSET = 0, 4
BPF_LD_W_ABS, BPF_JEQ_K, BPF_JGE_K, BPF_RET_K = 0x20, 0x15, 0x35, 0x06
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
X32_BIT = 0x40000000

# (audit arch, add_key, request_key, keyctl, memfd_create) by the machine this runs on; a process can also enter
# the kernel as a 32-bit x86 one on x86_64 (int 0x80), which is checked as its own architecture.
ARCHES = {
    "x86_64": [(0xC000003E, 248, 249, 250, 319), (0x40000003, 286, 287, 288, 356)],
    "aarch64": [(0xC00000B7, 217, 218, 219, 279)],
}


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def program(deny_memfd: bool) -> bytes:
    """The filter as bytes of `struct sock_filter`; unknown architectures are refused altogether."""
    arches = ARCHES.get(platform.machine())
    if arches is None:
        raise RuntimeError(f"no seccomp filter for this machine's architecture ({platform.machine()})")
    deny = _insn(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.EPERM)
    allow = _insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW)
    blocks = []
    for arch, *calls in arches:
        calls = calls if deny_memfd else calls[:3]
        # in this architecture's block: load nr; x32 numbers (x86_64 only) are refused; each listed call denies
        body = [_insn(BPF_LD_W_ABS, 0, 0, NR_OFFSET)]
        if arch == 0xC000003E:
            body.append(_insn(BPF_JGE_K, len(calls) + 1, 0, X32_BIT))
        body += [_insn(BPF_JEQ_K, len(calls) - i, 0, nr) for i, nr in enumerate(calls)]
        body += [allow, deny]
        blocks.append((arch, body))
    out = [_insn(BPF_LD_W_ABS, 0, 0, ARCH_OFFSET)]
    # each block is entered on its arch, else the next arch check; the last miss denies
    for arch, body in blocks:
        out.append(_insn(BPF_JEQ_K, 0, len(body), arch))
        out += body
        out.append(_insn(BPF_LD_W_ABS, 0, 0, ARCH_OFFSET))
    out[-1] = deny  # no architecture matched
    return b"".join(out)


def filter_fd(deny_memfd: bool) -> int:
    """A pipe's read end holding the program, for `bwrap --seccomp FD` (bwrap reads it to EOF)."""
    data = program(deny_memfd)
    r, w = os.pipe()
    os.write(w, data)  # a few hundred bytes: far below a pipe's buffer
    os.close(w)
    return r
