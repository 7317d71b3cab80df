"""The buttons: Approve, Deny, Revoke now / Cancel request, Extend, Ratify, Request access.

Every click is acknowledged at once; the slow part runs after the ack and the
answer goes to the click's response_url (or, from App Home, to a DM). The use
case checks that the clicker may do it: a button is no authority.
"""

from __future__ import annotations

from slack_bolt.async_app import AsyncAck

from bot.extension_rules import check_extension_rules
from bot.lifecycle import ExtensionRejected, State
from bot.models import utcnow
from bot.slack.blocks import Message, error_message
from bot.slack.blocks.breakglass import ratify_note
from bot.slack.blocks.replies import decision_note, not_extendable, not_pending, revoked, sentence
from bot.slack.forms import deny_modal, extend_modal, request_modal
from bot.slack.home import remember_home
from bot.slack.payloads import clicker, trigger
from bot.slack.surface import Listeners, Surface
from bot.slack.text import JSON


class Buttons(Listeners):
    """The click listeners."""

    def __init__(self, surface: Surface) -> None:
        super().__init__(surface)
        self.approve_click = self.on_click("approve", self._approve)
        self.deny_click = self.on_click("deny", self._ask_deny_reason)
        self.revoke_click = self.on_click("revoke", self._revoke_clicked)
        self.extend_click = self.on_click("extend", self._ask_extension)
        self.ratify_click = self.on_click("ratify", self._ratify)

    async def _approve(self, grant_id: str, user: str, body: JSON) -> Message | None:
        decision = await self.workflow.approve(grant_id, user)
        await self.surface.refresh_home(body)
        return decision_note(decision.outcome, decision.grant)

    async def _ratify(self, grant_id: str, user: str, body: JSON) -> Message | None:
        """Ratify a break-glass grant; the use case checks the clicker may."""
        return ratify_note(await self.workflow.ratify(grant_id, user))

    async def _ask_deny_reason(self, grant_id: str, user: str, body: JSON) -> Message | None:
        grant = await self.workflow.get(grant_id)
        if grant.state != State.PENDING:
            return not_pending(grant)
        await self.workflow.require_decider(grant, user, "deny")
        await self.surface.open_view(trigger(body), remember_home(deny_modal(grant), body), user)
        return None

    async def _revoke_clicked(self, grant_id: str, user: str, body: JSON) -> Message:
        """Revoke (or cancel) and say what happened; the workflow checks permission."""
        revocation = await self.workflow.revoke(grant_id, user)
        await self.surface.refresh_home(body)
        return revoked(revocation)

    async def _ask_extension(self, grant_id: str, user: str, body: JSON) -> Message | None:
        grant = await self.workflow.get(grant_id)
        await self.workflow.require_owner_or_admin(grant, user, "extend")
        if grant.state != State.ACTIVE or grant.expires_at is None:
            return not_extendable(grant)
        role = self.policy.roles.get(grant.role)
        if role is not None:
            try:
                check_extension_rules(grant, role, grant.role, self.workflow.clock())
            except ExtensionRejected as exc:
                return error_message(sentence(exc))
        modal = remember_home(extend_modal(grant, self.policy, utcnow()), body)
        await self.surface.open_view(trigger(body), modal, user)
        return None

    async def open_modal_click(self, ack: AsyncAck, body: JSON) -> None:
        await ack()
        await self.surface.open_view(trigger(body), request_modal(self.policy), clicker(body))
