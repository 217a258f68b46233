"""The local backend: episodes on a thread pool in this process."""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from oec.core.types import Task, Trajectory
from oec.rollout.episodes import CollectConfig, Collector


class LocalBackend:
    """Episodes on a thread pool in this process."""

    def __init__(self, cfg: CollectConfig):
        self.collector = Collector(cfg)
        self.capacity = cfg.workers * 2  # queued ahead, so that no thread waits for the main thread between episodes
        self.pool = ThreadPoolExecutor(cfg.workers, thread_name_prefix="episode")
        self.running: dict = {}
        self.retried = 0

    def submit(self, task: Task, sample: int) -> None:
        self.running[self.pool.submit(self.collector.run_episode, task, sample)] = (task.task_id, sample)

    def finished(self, timeout: float) -> list[Trajectory]:
        done, _ = wait(self.running, return_when=FIRST_COMPLETED, timeout=timeout)
        for fut in done:
            self.running.pop(fut)
        return [fut.result() for fut in done]

    def cancel(self) -> None:
        self.collector.stop.set()  # episodes in flight end at their next turn as "cancelled"

    def drain(self) -> list[Trajectory]:
        out = [fut.result() for fut in self.running]
        self.running.clear()
        return out

    def close(self, abandon: bool) -> None:
        self.pool.shutdown(wait=not abandon, cancel_futures=True)
        if not abandon:  # abandoned episodes may still be asking their policies
            self.collector.close()
