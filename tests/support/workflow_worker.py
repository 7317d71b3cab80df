"""A workflow process for crash drills: runs the scheduler, optionally SIGKILLs itself.

Usage: python -m tests.support.workflow_worker REDIS_URL KUBECONFIG POLICY SPOOL [KILL_AT]
KILL_AT is a provisioning step (provisioning, service_account, binding, token, verified,
before_delivery).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from bot.core import build_core
from bot.policy import load_policy
from tests.support.doubles import RecordingNotifier
from tests.support.harness import FAST_BACKOFF, FAST_SCHEDULER, default_directory


async def main(redis_url: str, kubeconfig: str, policy: str, spool: str, kill_at: str) -> None:
    core = await build_core(
        load_policy(Path(policy)),
        redis_url,
        notifier=RecordingNotifier(spool=Path(spool)),
        directory=default_directory(),
        kubeconfig=kubeconfig,
        backoff=FAST_BACKOFF,
        scheduler_options=FAST_SCHEDULER,
    )

    def step(name: str) -> None:
        if name == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    core.workflow.on_provision_step = step
    core.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(main(*args[:4], args[4] if len(args) > 4 else ""))
