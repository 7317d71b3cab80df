"""Scheduled access on the Slack side: the requester's time zone for ``--at HH:MM``.

Slack knows each member's zone (``users.info`` → ``user.tz``, an IANA name); the pure
reading of the time is :mod:`bot.start_times`.
"""

from __future__ import annotations

import logging

from slack_sdk.web.async_client import AsyncWebClient

from bot.policy import RequestRejected
from bot.slack.client import error_code
from bot.slack.directory import SLACK_FAILURES
from bot.start_times import StartRequest

__all__ = ["in_requesters_zone"]

log = logging.getLogger(__name__)


async def in_requesters_zone(
    client: AsyncWebClient, user: str, start: StartRequest
) -> StartRequest:
    """``start`` with ``user``'s Slack time zone when it is a wall-clock time (an
    instant is returned as it is). Raises RequestRejected (field ``start``) when Slack
    cannot say: a time read in a zone we guessed would start access at the wrong hour."""
    if start.wall is None:
        return start
    try:
        resp = await client.users_info(user=user)
    except SLACK_FAILURES as exc:
        log.warning("users.info %s failed (%s)", user, error_code(exc))
        resp = None
    tz = ((resp.get("user") or {}).get("tz") if resp is not None else None) or None
    if not isinstance(tz, str):
        message = (
            "Slack did not tell your time zone; give the start in RFC 3339, e.g. 2026-12-01T09:00Z"
        )
        raise RequestRejected(message, {"start": f"{message}."})
    return start.in_zone(tz)
