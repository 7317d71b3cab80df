"""The modals: the request form redrawn as its cluster and role change, and the
request, deny and extend forms submitted.

A submission is validated before the ack, so a mistake shows next to its field
(``response_action: errors``); what runs before the ack is pure or one bounded
local read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

from redis.exceptions import RedisError
from slack_bolt.async_app import AsyncAck
from slack_sdk.errors import SlackClientError

from bot.errors import UnknownGrant
from bot.policy import AccessRequestSpec, role_clusters
from bot.slack import ids
from bot.slack.blocks import Message
from bot.slack.blocks.narrowing import offer_message
from bot.slack.blocks.replies import (
    DATABASE_UNREACHABLE,
    GRANT_GONE,
    NOT_POSSIBLE,
    denied_already,
    extended,
)
from bot.slack.client import error_code
from bot.slack.forms import (
    grant_from_metadata,
    read_request_form,
    read_text,
    request_modal,
    validate_extension,
    validate_request_form,
)
from bot.slack.home import submitted_from_home
from bot.slack.notifier import CARD_PATIENCE_SECONDS
from bot.slack.payloads import clicker, selected, view_values
from bot.slack.schedule import start_problem
from bot.slack.surface import Listeners
from bot.start_times import StartRequest
from bot.usecases.permissions import PERMISSIONS_CHECKING, Permissions
from bot.workflow import ExtensionOffer, Outcome

log = logging.getLogger(__name__)

JSON = dict[str, Any]

# A read before an ack gets this long, so the ack still goes out within Slack's 3 s.
PRE_ACK_PATIENCE_SECONDS = 0.8


class Modals(Listeners):
    """The form listeners."""

    # -- the request form, redrawn -----------------------------------------------------------

    async def modal_cluster_changed(self, ack: AsyncAck, body: JSON, action: JSON) -> None:
        """The request form's cluster changed: offer that cluster's roles."""
        await ack()
        view = body.get("view") or {}
        await self._redraw(view, view.get("hash"), cluster=selected(action))

    async def modal_role_changed(self, ack: AsyncAck, body: JSON, action: JSON) -> None:
        """The request form's role changed: show what it allows on the chosen cluster.

        The form is redrawn at once (saying "permissions being checked" unless the
        answer comes within the card's patience) and again when the answer comes.
        """
        await ack()
        view = body.get("view") or {}
        form = read_request_form(view_values(view))
        role = selected(action)
        cluster = form.cluster or ""
        if role not in self.policy.roles or cluster not in role_clusters(self.policy, role):
            return
        check = self.surface.permissions.check_role(cluster, self.policy.roles[role])
        found: Permissions
        try:
            found = await asyncio.wait_for(asyncio.shield(check), CARD_PATIENCE_SECONDS)
        except TimeoutError:
            found = PERMISSIONS_CHECKING
        view_hash = await self._redraw(
            view, view.get("hash"), cluster=cluster, role=role, permissions=found
        )
        if found is PERMISSIONS_CHECKING and view_hash is not None:
            await self._redraw(view, view_hash, cluster=cluster, role=role, permissions=await check)

    async def _redraw(
        self,
        view: JSON,
        view_hash: Any,
        *,
        cluster: str,
        role: str | None = None,
        permissions: Permissions = PERMISSIONS_CHECKING,
    ) -> str | None:
        """``views.update`` the request form; the new hash, None when Slack refused."""
        metadata = str(view.get("private_metadata") or "")
        form = request_modal(
            self.policy, cluster=cluster, role=role, metadata=metadata, permissions=permissions
        )
        try:
            resp = await self.surface.client.views_update(
                view_id=str(view.get("id") or ""), hash=view_hash, view=form
            )
        except SlackClientError as exc:
            # hash_conflict: the user changed the form meanwhile; the newer update wins.
            log.info("request form update skipped: %s", error_code(exc))
            return None
        return str((resp.get("view") or {}).get("hash") or "") or None

    # -- submissions -----------------------------------------------------------------------

    async def request_submitted(self, ack: AsyncAck, body: JSON, view: JSON) -> None:
        user = clicker(body)
        form = read_request_form(view_values(view))
        spec, errors = validate_request_form(self.policy, form, user)
        start, start_errors = start_problem(self.policy, form.start, self.workflow.clock())
        errors = {**start_errors, **errors}
        if spec is None or errors:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        await self.surface.answer(user, None, "request", "", self._submit_quietly(spec, start))

    async def _submit_quietly(
        self, spec: AccessRequestSpec, start: StartRequest | None
    ) -> Message | None:
        result = await self.workflow.request(spec, start)  # the requester hears from the
        # notifier, or, asking for what they hold already, gets the offer to extend it
        return offer_message(result) if isinstance(result, ExtensionOffer) else None

    async def deny_submitted(self, ack: AsyncAck, body: JSON, view: JSON) -> None:
        user = clicker(body)
        grant_id = grant_from_metadata(str(view.get("private_metadata") or ""))
        reason = read_text(view_values(view), ids.REASON_BLOCK) or ""
        await ack()
        await self._answer(user, view, "deny", grant_id, self._deny(grant_id, user, reason))

    async def _answer(
        self, user: str, view: JSON, what: str, grant_id: str, work: Awaitable[Message | None]
    ) -> None:
        """Do a form's ``work`` and answer ``user``; a form opened from the App Home
        redraws it."""
        await self.surface.answer(user, None, what, grant_id, work)
        if submitted_from_home(view):
            await self.surface.publish_home(user)

    async def _deny(self, grant_id: str, user: str, reason: str) -> Message | None:
        decision = await self.workflow.deny(grant_id, user, reason)
        if decision.outcome == Outcome.ALREADY_DECIDED:
            return denied_already(decision.grant)
        return None

    async def extend_submitted(self, ack: AsyncAck, body: JSON, view: JSON) -> None:
        user = clicker(body)
        grant_id = grant_from_metadata(str(view.get("private_metadata") or ""))
        try:
            # A local Redis read, bounded so the ack still goes out in time.
            grant = await asyncio.wait_for(self.workflow.get(grant_id), PRE_ACK_PATIENCE_SECONDS)
        except (RedisError, TimeoutError) as exc:
            log.warning(
                "extension form of %s not checked: %s", grant_id, str(exc) or type(exc).__name__
            )
            await ack(response_action="errors", errors={ids.DURATION_BLOCK: DATABASE_UNREACHABLE})
            return
        except UnknownGrant:
            await ack(response_action="errors", errors={ids.DURATION_BLOCK: GRANT_GONE})
            return
        text = read_text(view_values(view), ids.DURATION_BLOCK)
        by, problem = validate_extension(grant, self.policy, text, self.workflow.clock())
        if by is None:
            await ack(
                response_action="errors", errors={ids.DURATION_BLOCK: problem or NOT_POSSIBLE}
            )
            return
        await ack()
        await self._answer(user, view, "extend", grant_id, self._extend(grant_id, user, by))

    async def _extend(self, grant_id: str, user: str, by: timedelta) -> Message | None:
        result = await self.workflow.extend(grant_id, user, by)
        # Extended at once: the DM with the fresh kubeconfig says so already.
        return extended(grant_id, result) if result.id != grant_id else None
