"""An outbox drainer in its own process that SIGKILLs itself when told its first change:
the crash between reading an entry and telling it.

    python -m tests.support.outbox_worker REDIS_URL LEASE_SECONDS

Prints ``leading`` once it holds the drain lease.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from bot.core import redis_client
from bot.models import Grant
from bot.outbox import Outbox


async def main(url: str, lease_seconds: float) -> None:
    async def die(before: Grant, after: Grant) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    outbox = Outbox(redis_client(url), die, lease_seconds=lease_seconds)
    stop = asyncio.Event()
    task = asyncio.create_task(outbox.run(stop))
    while not outbox.leading:
        await asyncio.sleep(0.02)
    print("leading", flush=True)
    await task


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
