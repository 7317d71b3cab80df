"""Refuse everything an offboarded person sends, before any listener runs.

The workflow refuses an offboarded actor in every use case; this gate makes the
Slack surface say so uniformly, including for what never reaches a use case
(``/access help``, the request form, cluster reports, App Home). Each refusal
is audited by :meth:`bot.workflow.Workflow.require_enabled`. When Redis cannot
be asked, the gate fails closed: the person is told to try again.

It answers within Slack's 3 s ack: a slash command gets the ephemeral refusal
as its response, a modal submission has its modal replaced by the refusal, a
click is acknowledged and the refusal goes to the person's DM. ``user_change``
events always pass: that is how a deactivated account gets offboarded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError
from slack_bolt.response import BoltResponse

from bot.errors import NotAllowed
from bot.ports import Notifier
from bot.slack.blocks import Message, error_message
from bot.slack.blocks.replies import ACCOUNT_UNCHECKED, refusal_view, refused
from bot.slack.payloads import ephemeral
from bot.slack.text import JSON
from bot.workflow import Workflow

log = logging.getLogger(__name__)


def _sender(body: JSON) -> tuple[str, str]:
    """(what the person did, their user ID); ("", "") for what the gate lets through."""
    if "command" in body and "user_id" in body:
        return f"{body['command']} {body.get('text') or ''}".strip(), str(body["user_id"])
    kind = str(body.get("type") or "")
    user = str((body.get("user") or {}).get("id") or "")
    if kind == "block_actions":
        actions = body.get("actions") or [{}]
        return f"click {actions[0].get('action_id') or ''}".strip(), user
    if kind in ("view_submission", "view_closed", "block_suggestion"):
        callback = (body.get("view") or {}).get("callback_id") or ""
        return f"{kind} {callback}".strip(), user
    event = body.get("event") or {}
    if kind == "event_callback" and event.get("type") == "app_home_opened":
        return "open App Home", str(event.get("user") or "")
    return "", ""


class OffboardGate:
    """Bolt middleware: refuses whoever was offboarded (see the module's docstring).

    Parameters:
        workflow: answers whether a person was offboarded, and audits the refusal.
        notifier: DMs the refusal of a click (a click has no reply of its own).
    """

    def __init__(self, workflow: Workflow, notifier: Notifier) -> None:
        self.workflow = workflow
        self.notifier = notifier
        self._tasks: set[asyncio.Task[None]] = set()

    async def check(self, body: JSON, next_: Callable[[], Awaitable[None]]) -> BoltResponse | None:
        what, user = _sender(body)
        if not user:
            await next_()
            return None
        try:
            await self.workflow.require_enabled(user, what)
        except NotAllowed as exc:
            return self._refusal(body, user, refused(exc))
        except RedisError:
            # Fail closed: whoever cannot be checked gets nothing, not even the
            # reports, the form or /access help. Deactivations (user_change)
            # never reach this check, so offboarding itself goes on.
            log.warning("offboarding check failed for %s: Redis unavailable", user)
            return self._refusal(body, user, error_message(ACCOUNT_UNCHECKED))
        await next_()
        return None

    def _refusal(self, body: JSON, user: str, message: Message) -> BoltResponse:
        if "command" in body:
            return BoltResponse(status=200, body=ephemeral(message))
        kind = body.get("type")
        if kind == "view_submission":
            payload = {"response_action": "update", "view": refusal_view(message)}
            return BoltResponse(status=200, body=payload)
        if kind == "block_suggestion":
            return BoltResponse(status=200, body={"options": []})
        if kind == "block_actions":
            task = asyncio.create_task(self.notifier.send_dm(user, message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return BoltResponse(status=200, body="")
