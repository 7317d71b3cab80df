"""``async with`` for the test bed's local servers: enter starts, exit stops."""

from __future__ import annotations

from typing import Any, Self


class AsyncServer:
    """A local server with ``start() -> self`` and ``stop()``; ``async with`` runs both.

    Subclasses implement ``start`` (returning ``self``) and ``stop``.
    """

    async def start(self) -> Self:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.stop()
