"""Posting the nudges about a pending request (``Notifier.nudge``) in its card's thread,
with usergroups mentioned by their ID (``<!subteam^S…>``) as Slack requires."""

from __future__ import annotations

import logging

from slack_sdk.web.async_client import AsyncWebClient

from bot.models import Grant
from bot.nudge_rules import Nudge
from bot.slack.blocks.nudges import nudge_message
from bot.slack.directory import SLACK_FAILURES, SlackDirectory

__all__ = ["post_nudge"]

log = logging.getLogger(__name__)


async def post_nudge(
    client: AsyncWebClient, directory: SlackDirectory, channel: str, grant: Grant, nudge: Nudge
) -> None:
    """Post ``nudge`` in the thread of ``grant``'s card (in ``channel`` when it has none).

    Raises ``SlackClientError`` when Slack refuses the post.
    """
    group_ids: dict[str, str] = {}
    for handle in nudge.who.groups:
        try:
            found = await directory.group_id(handle)
        except SLACK_FAILURES:
            log.warning("usergroup @%s has no known ID; named as text", handle)
            found = None
        if found is not None:
            group_ids[handle] = found
    message = nudge_message(grant, nudge, group_ids)
    card = grant.card
    await client.chat_postMessage(
        channel=card.channel if card else channel,
        thread_ts=card.ts if card else None,
        unfurl_links=False,
        unfurl_media=False,
        **message.as_kwargs(),
    )
