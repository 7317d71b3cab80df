"""Bounded retries with exponential backoff for transient failures."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from k8s.errors import is_transient

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    attempts: int = 5
    base: float = 0.5
    cap: float = 8.0

    def delay(self, attempt: int) -> float:
        # Full jitter: replicas retrying the same apiserver spread out.
        return random.uniform(0, min(self.cap, self.base * 2**attempt))  # noqa: S311


async def retrying(
    what: str,
    op: Callable[[], Awaitable[T]],
    backoff: Backoff,
    retry_on: Callable[[BaseException], bool] = is_transient,
) -> T:
    """Run ``op``; retry what ``retry_on`` accepts, re-raise anything else at once.

    ``retry_on`` defaults to :func:`k8s.errors.is_transient`. The last failure is
    re-raised unchanged once ``backoff.attempts`` tries are used up.
    """
    for attempt in range(backoff.attempts):
        try:
            return await op()
        except Exception as exc:
            if not retry_on(exc) or attempt == backoff.attempts - 1:
                raise
            pause = backoff.delay(attempt)
            log.warning("%s failed (%s); retry %d in %.1fs", what, exc, attempt + 1, pause)
            await asyncio.sleep(pause)
    raise AssertionError("unreachable")
