"""Run the benchmarks one after another (`make bench`); pass --quick for the short sizes.

Each prints its own figures and whether its goal is met; this script only runs them and exits non-zero if one crashed
(an unmet goal is a finding, not a crash). See bench/RESULTS.md for recorded figures.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SCRIPTS = ("shell_latency.py", "loop_concurrency.py", "env_cost.py", "local_batching.py", "shift_cost.py",
           "ray_overhead.py", "sft_throughput.py", "eval_throughput.py", "greedy_equivalence.py")


def main() -> int:
    extra = [a for a in sys.argv[1:] if a == "--quick"]
    failed = []
    for script in SCRIPTS:
        print(f"\n=== {script} {' '.join(extra)}", flush=True)
        t0 = time.monotonic()
        rc = subprocess.run([sys.executable, str(BENCH / script), *extra]).returncode
        print(f"=== {script}: exit {rc}, {time.monotonic() - t0:.0f} s", flush=True)
        if rc:
            failed.append(script)
    if failed:
        print(f"\ncrashed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
