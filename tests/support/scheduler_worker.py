"""A scheduler worker in its own process, so tests can run several and SIGKILL one.

    python -m tests.support.scheduler_worker --url unix:///... --mode count|sleep

Handlers record what they did in Redis under ``<prefix>:test:*``:
- ``count``: HINCRBY ``runs`` per job id (a duplicate run shows up as a count of 2).
- ``sleep``: HINCRBY ``started``, sleep ``data["sleep"]`` seconds, HINCRBY ``finished``.
On SIGTERM the worker shuts down gracefully and RPUSHes its lag samples (ms) to ``lags``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import redis.asyncio as aioredis

from bot.scheduler import Job, Scheduler


def _parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--prefix", default="ab:sched")
    p.add_argument("--mode", choices=["count", "sleep"], default="count")
    p.add_argument("--lease", type=float, default=30.0)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--worker-id", default=None)
    return p.parse_args()


async def _main(args: argparse.Namespace) -> None:
    # Bytes replies on purpose: the in-process tests use decode_responses=True.
    r = aioredis.from_url(args.url)
    test_key = f"{args.prefix}:test"
    lags: list[float] = []

    async def count(job: Job) -> None:
        await r.hincrby(f"{test_key}:runs", job.id, 1)

    async def sleep(job: Job) -> None:
        await r.hincrby(f"{test_key}:started", job.id, 1)
        await asyncio.sleep(float(job.data.get("sleep", 0)))
        await r.hincrby(f"{test_key}:finished", job.id, 1)

    sched = Scheduler(
        r,
        prefix=args.prefix,
        worker_id=args.worker_id,
        lease_seconds=args.lease,
        concurrency=args.concurrency,
        on_lag=lambda _kind, seconds: lags.append(seconds * 1000),
    )
    sched.register("count", count)
    sched.register("sleep", sleep)

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    worker = asyncio.create_task(sched.run(stop))
    await r.incr(f"{test_key}:ready")
    await worker
    if lags:
        await r.rpush(f"{test_key}:lags", *lags)
    await r.aclose()


if __name__ == "__main__":
    asyncio.run(_main(_parse_args()))
