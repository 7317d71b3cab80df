"""``accessbot serve``: run the bot until it is stopped."""

from __future__ import annotations

import argparse

from bot.settings import Settings


async def serve(settings: Settings, _: argparse.Namespace) -> int:
    """Serve Slack (HTTP or Socket Mode), the webhook, health and metrics; 0 on a clean stop."""
    from bot.serve import serve as run  # Slack and aiohttp app code is only needed here

    await run(settings)
    return 0
