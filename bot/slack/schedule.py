"""Scheduled access on the Slack side: the requester's time zone for ``--at HH:MM``, and
the request modal's start field (a Block Kit ``datetimepicker``: Slack shows it in the
user's own zone and submits epoch seconds, ``selected_date_time``).

Slack knows each member's zone (``users.info`` → ``user.tz``, an IANA name); the pure
reading of the time is :mod:`bot.start_times`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.durations import format_duration
from bot.policy import Policy, RequestRejected
from bot.slack import ids
from bot.slack.client import error_code
from bot.slack.directory import SLACK_FAILURES
from bot.slack.text import plain
from bot.start_times import StartRequest, check_start

__all__ = ["in_requesters_zone", "read_start", "start_input", "start_problem"]

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


def start_input(policy: Policy) -> dict[str, Any]:
    """The modal's optional start field (empty: at approval)."""
    ahead = policy.defaults.max_schedule_ahead
    return {
        "type": "input",
        "block_id": ids.START_BLOCK,
        "optional": True,
        "label": plain("Start (optional)"),
        "hint": plain(
            "Leave empty to start once approved. Approval happens now; the access is made "
            f"at this time and its duration counts from it. At most {_days(ahead)} ahead."
        ),
        "element": {"type": "datetimepicker", "action_id": "value"},
    }


def _days(span: timedelta) -> str:
    return format_duration(span)


def read_start(values: dict[str, Any]) -> datetime | None:
    """The picked start (aware UTC) from ``view.state.values``; None when left empty."""
    actions = values.get(ids.START_BLOCK)
    if not isinstance(actions, dict):
        return None
    for element in actions.values():
        picked = element.get("selected_date_time") if isinstance(element, dict) else None
        if isinstance(picked, int) and not isinstance(picked, bool):
            return datetime.fromtimestamp(picked, UTC)
    return None


def start_problem(
    policy: Policy, picked: datetime | None, now: datetime
) -> tuple[StartRequest | None, dict[str, str]]:
    """The start to request, or the error to show beside the start field."""
    if picked is None:
        return None, {}
    try:
        check_start(picked, now, policy.defaults.max_schedule_ahead)
    except RequestRejected as exc:
        return None, {ids.START_BLOCK: exc.problems["start"]}
    return StartRequest.instant(picked), {}
