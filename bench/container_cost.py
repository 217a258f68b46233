"""Cost of one toy episode in a podman container (env.runtime=docker) against the bubblewrap sandbox, side by side.

Episodes are the scripted expert's on distinct toy tasks, one at a time, alternating the two runtimes task by task so
that both see the same machine load. Parts: `setup` (SandboxEnv(...): for podman `run`, the tools, the image check),
`commands` (the agent's commands), `verify`, `close`. Needs podman and the base image: `make podman-image`; podman
reads scripts/containers.conf (set here as CONTAINERS_CONF unless it is set already).

    python bench/container_cost.py [--n 10]
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

from common import machine, med, toy_tasks

from oec.env.sandbox_env import EnvConfig, SandboxEnv
from oec.rollout.policies import make_policy
from oec.rollout.loop import rollout
from oec.env.docker import DockerConfig
from oec.rollout.schedules import make_schedule

PARTS = ("setup", "commands", "verify", "close", "total")


def episode(task, policy, cfg: EnvConfig) -> dict:
    t0 = time.perf_counter()
    env = SandboxEnv(task, cfg)
    t1 = time.perf_counter()
    plan = make_schedule("expert").plan(task, {"expert": policy}, random.Random(0), lambda: None)
    traj = rollout(task, env, plan, mode="expert", seed=0)
    t2 = time.perf_counter()
    env.close()
    t3 = time.perf_counter()
    parts = {"setup": t1 - t0, "commands": traj.timings["env_s"], "verify": traj.timings["verify_s"],
             "close": t3 - t2}
    parts["total"] = sum(parts.values())
    return parts | {"resolved": traj.resolved, "steps": len(traj.steps)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10, help="episodes per runtime (default 10)")
    ap.add_argument("--image", default="localhost/oec-base:bookworm")
    args = ap.parse_args()
    os.environ.setdefault("CONTAINERS_CONF", str(Path(__file__).resolve().parents[1] / "scripts" / "containers.conf"))
    runtimes = {"bwrap": EnvConfig(),
                "podman": EnvConfig(runtime="docker", docker=DockerConfig(docker="podman", image=args.image))}
    policy = make_policy("scripted:expert")
    warm = toy_tasks(1, seed=99)[0]
    for cfg in runtimes.values():  # imports, the first sandbox, the image's first start: not counted
        episode(warm, policy, cfg)
    eps = {name: [] for name in runtimes}
    for task in toy_tasks(args.n, seed=1):
        for name, cfg in runtimes.items():
            eps[name].append(episode(task, policy, cfg))

    print(f"container_cost  {machine()}")
    print(f"  {args.n} expert episodes per runtime (toy, seed 1), one at a time, runtimes alternating; resolved "
          + ", ".join(f"{k} {sum(e['resolved'] for e in v)}/{args.n}" for k, v in eps.items())
          + f"; median steps {med([e['steps'] for e in eps['podman']]):g}")
    print(f"  {'median s':10}{'bwrap':>10}{'podman':>10}{'ratio':>10}")
    for part in PARTS:
        b, p = med([e[part] for e in eps["bwrap"]]), med([e[part] for e in eps["podman"]])
        print(f"  {part:10}{b:10.3f}{p:10.3f}{p / b if b else float('inf'):9.1f}x")


if __name__ == "__main__":
    main()
