"""Micro-batching: concurrent requests gathered into batches run by one worker thread.

The event loop only enqueues a job and awaits its future; one thread owns the model and
runs the batches, so the loop never blocks on computation. A batch holds jobs with the same
*key* (the work and its parameters: endpoint, defense, image size, attack settings), so every
batch is one stack of equal-shaped images run in one call. The worker takes the oldest
pending job, waits up to ``max_wait`` after that job arrived for more jobs with the same key
(or until ``max_batch`` are there), runs them, and resolves each job's future on its own
event loop. Jobs with other keys stay queued, in arrival order, for the next batches.

Written here rather than taken from a library: the serving frameworks that batch (Ray
Serve, TorchServe, BentoML) are whole servers with their own process model; what the
service needs is this one queue and thread in front of one in-process model.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: ``run(key, payloads) -> results``: one result per payload, in order (an Exception fails that job)
BatchFn = Callable[[Hashable, list[Any]], Sequence[Any]]


class WorkerStoppedError(RuntimeError):
    """Raised by :meth:`BatchWorker.submit` after the worker was stopped."""


@dataclass
class _Job:
    key: Hashable
    payload: Any
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    enqueued: float = field(default_factory=time.monotonic)


def _resolve(fut: asyncio.Future[Any], result: Any) -> None:
    if fut.done():  # the client went away and the request was cancelled
        return
    if isinstance(result, BaseException):
        fut.set_exception(result)
    else:
        fut.set_result(result)


class BatchWorker:
    """One thread that runs queued jobs in batches of equal keys.

    Args:
        run: ``run(key, payloads)`` computes a batch; it returns one result per payload
            (an ``Exception`` instance fails only that job). If it raises, a batch of more than
            one job is retried one job at a time, so one bad input does not fail the others.
        max_batch: most jobs in one batch.
        max_wait_s: how long to wait for a batch to fill, counted from its oldest job's arrival.
        on_batch: called with ``(key, size, seconds)`` after each batch (metrics).
        name: the thread's name.
    """

    def __init__(
        self,
        run: BatchFn,
        *,
        max_batch: int,
        max_wait_s: float,
        on_batch: Callable[[Hashable, int, float], None] | None = None,
        name: str = "srdefense-batch-worker",
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch: expected >= 1, got {max_batch}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s: expected >= 0, got {max_wait_s}")
        self._run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._pending: list[_Job] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    @property
    def queue_length(self) -> int:
        """Jobs waiting for a batch (not counting the batch being run)."""
        with self._cond:
            return len(self._pending)

    @property
    def running(self) -> bool:
        """Whether the worker thread is alive."""
        return self._thread.is_alive()

    def start(self) -> None:
        """Start the worker thread."""
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Run every job already queued, then stop the thread (waits up to ``timeout`` s)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    async def submit(self, key: Hashable, payload: Any) -> Any:
        """Queue ``payload`` under ``key`` and wait for its result.

        Raises:
            WorkerStoppedError: if the worker is stopping.
            Exception: whatever the batch function gave for this job.
        """
        loop = asyncio.get_running_loop()
        job = _Job(key, payload, loop.create_future(), loop)
        with self._cond:
            if self._stopping:
                raise WorkerStoppedError("the server is shutting down")
            self._pending.append(job)
            self._cond.notify_all()
        return await job.future

    # -- the worker thread
    def _take_batch(self) -> list[_Job] | None:
        with self._cond:
            while not self._pending:
                if self._stopping:
                    return None
                self._cond.wait()
            first = self._pending[0]
            deadline = first.enqueued + self.max_wait_s
            while True:
                same = [j for j in self._pending if j.key == first.key]
                remaining = deadline - time.monotonic()
                if len(same) >= self.max_batch or remaining <= 0 or self._stopping:
                    break
                self._cond.wait(remaining)
            batch = same[: self.max_batch]
            taken = {id(j) for j in batch}
            self._pending = [j for j in self._pending if id(j) not in taken]
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            batch = [j for j in batch if not j.future.cancelled()]
            if not batch:
                continue
            key = batch[0].key
            t0 = time.perf_counter()
            results = self._compute(key, batch)
            if self._on_batch is not None:
                self._on_batch(key, len(batch), time.perf_counter() - t0)
            for job, result in zip(batch, results, strict=True):
                job.loop.call_soon_threadsafe(_resolve, job.future, result)

    def _compute(self, key: Hashable, batch: list[_Job]) -> list[Any]:
        try:
            results = list(self._run(key, [j.payload for j in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(batch)} jobs")
            return results
        except Exception as exc:
            if len(batch) == 1:
                return [exc]
            # retry alone, so that one failing input does not fail the others
            return [self._compute(key, [job])[0] for job in batch]
