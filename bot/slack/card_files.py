"""Files that go with an approval card: the full list of what a role allows, in the
card's thread, when the card's summary could not hold it (Slack: 3,000 characters per
section, 50 blocks per message)."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.models import MessageRef
from bot.slack.blocks import Permissions, allowance_file, allowance_file_name, allowance_fits
from bot.slack.client import error_code
from bot.usecases.permissions import Allowance

__all__ = ["attach_full_list"]

log = logging.getLogger(__name__)


async def attach_full_list(
    client: AsyncWebClient, ref: MessageRef, permissions: Permissions
) -> None:
    """When the summary did not fit the card at ``ref``: the full list as a file in its
    thread. Failures are logged, never raised (the card itself says what it can)."""
    if not isinstance(permissions, Allowance) or not permissions.exists:
        return
    if allowance_fits(permissions):
        return
    name = allowance_file_name(permissions)
    try:
        await client.files_upload_v2(
            channel=ref.channel,
            thread_ts=ref.ts,
            content=allowance_file(permissions).encode(),
            filename=name,
            title=name,
        )
    except SlackClientError as exc:
        log.error("could not attach %s to the card: %s", name, error_code(exc))
