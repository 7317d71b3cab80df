"""``bot.ports.Notifier`` on Slack: approval cards, requester DMs, the audit channel,
receipts and reminders.

Failures here never undo or block a state change: the store commits the change with
its outbox entry, and a drainer calls :meth:`SlackNotifier.grant_changed` afterwards
(:mod:`bot.outbox`), and every Slack call below
is wrapped so that one failing message (say, the audit channel was archived)
does not stop the others. Rate limits are honoured by the client's retry
handlers (:func:`bot.slack.client.make_slack_client`); refusals are logged and
set-up mistakes told to the admins by :class:`bot.slack.messenger.SlackMessenger`.
The kubeconfig file itself is handled in :mod:`bot.slack.delivery`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

import aiohttp
from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import MessagesDelayed
from bot.lifecycle import State
from bot.models import Grant, MessageRef, utcnow
from bot.nudge_rules import Nudge
from bot.policy import Policy
from bot.ports import PermissionSource
from bot.slack.audit_digest import RECEIPT_EVENTS, AuditPace, AuditSender, audit_posts
from bot.slack.blocks import (
    PERMISSIONS_CHECKING,
    Message,
    Permissions,
    approval_card,
    ended_dm,
    receipt_dm,
    reminder_message,
    requester_update,
)
from bot.slack.blocks.alerts import receipt_unverified
from bot.slack.card_files import attach_full_list
from bot.slack.client import error_code
from bot.slack.delivery import delete_kubeconfigs, deliver_kubeconfig
from bot.slack.directory import SlackDirectory
from bot.slack.messenger import ALERT_INTERVAL_SECONDS, DeliveryFailed, SlackMessenger
from bot.slack.nudges import post_nudge
from bot.slack.retry_after import is_passing
from bot.usecases.permissions import PermissionChecks

__all__ = ["CARD_PATIENCE_SECONDS", "RECEIPT_EVENTS", "DeliveryFailed", "SlackNotifier"]

log = logging.getLogger(__name__)

# How long a new card waits for its role's permissions before it is posted saying
# "permissions being checked" (and updated in place once they are known).
CARD_PATIENCE_SECONDS = 1.0
# How long, at shutdown, messages still being sent in the background are waited for.
FLUSH_BUDGET_SECONDS = 5.0


class SlackNotifier:
    """Tells people about requests and grants through Slack.

    Parameters:
        client: the Slack Web API client.
        policy: the approvals and audit channels, the admins, the approvers.
        directory: resolves ``@usergroup`` admins for alerts. Default: a new
            :class:`SlackDirectory` on ``client``.
        clock: the current time (aware UTC), for "expires in ..." texts.
            Default :func:`bot.models.utcnow`.
        alert_interval_seconds: the same admin alert goes out at most once per
            this many seconds. Default 600.
        permissions: what roles allow, for the cards. Default: checks with no
            cluster connection until :meth:`use_permissions` (cards then say so).
        audit_pace: how fast the audit channel is fed, and when it gets digests
            instead of one post per change (:mod:`bot.slack.audit_digest`).
    """

    def __init__(
        self,
        client: AsyncWebClient,
        policy: Policy,
        *,
        directory: SlackDirectory | None = None,
        clock: Callable[[], datetime] = utcnow,
        alert_interval_seconds: float = ALERT_INTERVAL_SECONDS,
        permissions: PermissionChecks | None = None,
        audit_pace: AuditPace | None = None,
    ) -> None:
        self._client = client
        self._policy = policy
        self._clock = clock
        self._directory = directory or SlackDirectory(client)
        self._slack = SlackMessenger(
            client,
            policy,
            self._directory,
            alert_interval_seconds=alert_interval_seconds,
        )
        self._permissions: PermissionSource = permissions or PermissionChecks()
        self._locks: dict[str, asyncio.Lock] = {}
        self._card_versions: dict[str, int] = {}
        self._latest: dict[str, Grant] = {}
        self._filling: set[str] = set()
        # The "access granted" DM of each live grant, to mark it ended later.
        # Process memory: after a restart the receipt DM alone says it ended.
        self._granted_dms: dict[str, MessageRef] = {}
        self._background: set[asyncio.Task[None]] = set()
        # Parts of a change told before another part failed for a passing reason
        # (grant id, version) -> what was done: a retry does not repeat them.
        self._partly_told: dict[tuple[str, int], set[str]] = {}
        self._audit = AuditSender(self._post_audit_message, self._audit_refused, pace=audit_pace)

    def use_permissions(self, permissions: PermissionSource) -> None:
        """Show roles' permissions on cards as ``permissions`` reads them."""
        self._permissions = permissions

    # -- Notifier ------------------------------------------------------------------------

    async def post_card(self, grant: Grant) -> MessageRef | None:
        """Post the card at once: with the role's permissions if they are known within
        CARD_PATIENCE_SECONDS, else saying they are being checked (then filled in)."""
        channel = self._policy.approvals_channel
        check = self._permissions.check(
            grant.cluster, grant.cluster_role, namespaced=grant.namespace is not None
        )
        try:
            permissions = await asyncio.wait_for(asyncio.shield(check), CARD_PATIENCE_SECONDS)
        except TimeoutError:
            permissions = PERMISSIONS_CHECKING
        card = approval_card(grant, self._policy, permissions, self._clock())
        try:
            resp = await self._client.chat_postMessage(
                channel=channel, unfurl_links=False, unfurl_media=False, **card.as_kwargs()
            )
        except SlackClientError as exc:
            await self._slack.trouble("post an approval card", exc, channel, grant)
            return None
        self._card_versions[grant.id] = grant.version
        ref = MessageRef(channel=str(resp["channel"]), ts=str(resp["ts"]))
        self._latest.setdefault(grant.id, grant)
        if permissions is PERMISSIONS_CHECKING:
            self._spawn(self._fill_in_later(grant.id, ref, check))
        else:
            self._spawn(attach_full_list(self._client, ref, permissions))
        return ref

    async def deliver_kubeconfig(self, grant: Grant, filename: str, content: bytes) -> str:
        """Upload the file into the requester's DM; returns the Slack file id.

        Raises :class:`DeliveryFailed` when Slack refuses it for good.
        """
        return await deliver_kubeconfig(self._slack, grant, filename, content)

    async def grant_changed(self, before: Grant, after: Grant) -> None:
        """Tell everyone about a committed change; returns once it was told.

        Called by the outbox's drainer (:mod:`bot.outbox`), never by the code that
        committed the change, so no access decision waits for Slack. The drainer
        tells one grant's changes in commit order (the end before the receipt); the
        per-grant lock keeps that order against a card's late permissions redraw.
        """
        latest = self._latest.get(after.id)
        if latest is None or latest.version <= after.version:
            self._latest[after.id] = after
        await self._changed(before, after)

    async def remind(self, grant: Grant) -> None:
        message = reminder_message(grant, self._clock())
        await self._guarded("send a reminder", self.send_dm(grant.requester, message), grant)

    async def nudge(self, grant: Grant, nudge: Nudge) -> None:
        """Post a reminder or escalation in the card's thread; failures are logged."""
        channel = self._policy.approvals_channel
        post = post_nudge(self._client, self._directory, channel, grant, nudge)
        await self._guarded("nudge the approvers", post, grant)

    async def send_dm(self, user: str, message: Message) -> None:
        """Send ``message`` to ``user`` privately; failures are logged, never raised."""
        try:
            await self._slack.dm(user, message)
        except (SlackClientError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("could not send a direct message to %s: %s", user, error_code(exc))

    async def alert_admins(self, text: str, *, key: str) -> None:
        """DM every admin ``text`` (plain), at most once per alert interval per ``key``;
        failures are logged, never raised."""
        try:
            await self._slack.alert_admins(text, key=key)
        except MessagesDelayed as exc:
            log.warning("%s", exc)

    @property
    def audit_waiting(self) -> int:
        """Changes queued for the audit channel and not yet posted there."""
        return self._audit.waiting

    async def flush(self, budget_seconds: float = FLUSH_BUDGET_SECONDS) -> None:
        """Wait (at most ``budget_seconds``) for messages still being sent in the background."""
        started = asyncio.get_running_loop().time()
        pending = set(self._background)
        if pending:
            await asyncio.wait(pending, timeout=budget_seconds)
        spent = asyncio.get_running_loop().time() - started
        await self._audit.flush(max(0.0, budget_seconds - spent))

    # -- what the card shows about the role --------------------------------------------------

    def _known(self, grant: Grant) -> Permissions:
        """The latest permissions known for the grant's role, without waiting."""
        namespaced = grant.namespace is not None
        return self._permissions.known(grant.cluster, grant.cluster_role, namespaced=namespaced)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _fill_in_later(
        self, grant_id: str, ref: MessageRef, check: asyncio.Task[Permissions]
    ) -> None:
        """Redraw a card posted as "permissions being checked" once the check answers."""
        self._filling.add(grant_id)
        try:
            permissions = await check
            async with self._lock(grant_id):
                grant = self._latest.get(grant_id)
                if grant is None:
                    return
                card = approval_card(grant, self._policy, permissions, self._clock())
                try:
                    await self._client.chat_update(
                        channel=ref.channel, ts=ref.ts, **card.as_kwargs()
                    )
                except SlackClientError as exc:
                    await self._slack.trouble("update an approval card", exc, ref.channel, grant)
                    return
            await attach_full_list(self._client, ref, permissions)
        except Exception:
            log.exception("could not fill in the permissions of card %s", grant_id)
        finally:
            self._filling.discard(grant_id)
            grant = self._latest.get(grant_id)
            if grant is not None and grant.ended:
                self._latest.pop(grant_id, None)

    # -- the three audiences ---------------------------------------------------------------

    async def _changed(self, before: Grant, after: Grant) -> None:
        """Tell the card, the requester, the audit channel and (new receipt) the receipt.

        Raises :class:`MessagesDelayed` when a part failed for a reason that may pass;
        the outbox then tells the change again, and the parts already told here are
        not repeated. Any other failure is logged and that part given up.
        """
        parts: list[tuple[str, Callable[[Grant, Grant], Awaitable[None]]]] = [
            ("update the approval card", self._update_card),
            ("message the requester", self._tell_requester),
            ("post to the audit channel", self._post_audit),
        ]
        if after.receipt is not None and after.receipt != before.receipt:
            parts.append(("send the receipt", self._tell_receipt))
        key = (after.id, after.version)
        done = self._partly_told.pop(key, set())
        async with self._lock(after.id):
            for doing, part in parts:
                if doing not in done and await self._guarded(doing, part(before, after), after):
                    done.add(doing)
        if len(done) < len(parts):
            self._partly_told[key] = done
            raise MessagesDelayed(
                f"Slack did not take every message of {after.id} v{after.version}"
            )
        if after.ended and after.id not in self._filling and _nothing_more_to_tell(after):
            self._locks.pop(after.id, None)
            self._latest.pop(after.id, None)

    async def _update_card(self, before: Grant, after: Grant) -> None:
        if after.card is None:
            return
        # A card recorded after the request moved on (decided or approved while it was
        # being posted) shows an older version: redraw it as soon as it is known.
        late = before.card is None and before.version != self._card_versions.get(after.id)
        if not (after.is_new or _on_card(before) != _on_card(after) or late):
            return  # nothing the card shows has changed (a nudge redraws its wait)
        if after.version < self._card_versions.get(after.id, -1):
            return  # a newer change already drew the card
        self._card_versions[after.id] = after.version
        card = approval_card(after, self._policy, self._known(after), self._clock())
        try:
            await self._client.chat_update(
                channel=after.card.channel, ts=after.card.ts, **card.as_kwargs()
            )
        except SlackClientError as exc:
            if is_passing(exc):
                raise
            await self._slack.trouble("update an approval card", exc, after.card.channel, after)

    async def _tell_requester(self, before: Grant, after: Grant) -> None:
        message = requester_update(before, after, self._policy, self._clock())
        if message is None:
            return
        ref = await self._slack.dm(after.requester, message)
        if ref is not None and after.state == State.ACTIVE and before.state != State.ACTIVE:
            self._granted_dms[after.id] = ref

    async def _tell_receipt(self, before: Grant, after: Grant) -> None:
        """A new receipt: the requester's copy, the file deleted, the DM marked ended.

        Runs after the store recorded the receipt, so never before the deletes
        and the verification. The hygiene is done once, at the first receipt;
        each step logs its own failure and never stops the next.
        """
        receipt = after.receipt
        assert receipt is not None
        if not receipt.verified:
            await self._slack.alert_admins(receipt_unverified(after), key=f"receipt:{after.id}")
        elif after.delivered_file:
            await self._slack.dm(after.requester, receipt_dm(after, receipt))
        if before.receipt is not None or not after.delivered_file:
            return
        await delete_kubeconfigs(self._slack, after)
        ref = self._granted_dms.pop(after.id, None)
        if ref is not None:
            try:
                await self._client.chat_update(
                    channel=ref.channel, ts=ref.ts, **ended_dm(after).as_kwargs()
                )
            except SlackClientError as exc:
                if is_passing(exc):
                    self._granted_dms[after.id] = ref  # the retry marks it
                    raise
                await self._slack.trouble("mark the access DM ended", exc, ref.channel, after)

    async def _post_audit(self, before: Grant, after: Grant) -> None:
        """Queue the change for the audit channel: posted at the channel's pace, as
        digests under a burst (:class:`bot.slack.audit_digest.AuditSender`)."""
        if self._policy.audit_channel is not None:
            self._audit.add(audit_posts(before, after))

    async def _post_audit_message(self, message: Message) -> None:
        assert self._policy.audit_channel is not None
        await self._slack.post(self._policy.audit_channel, message)

    async def _audit_refused(self, exc: SlackClientError) -> None:
        channel = self._policy.audit_channel or "-"
        await self._slack.trouble("post to the audit channel", exc, channel, None)

    # -- plumbing -------------------------------------------------------------------------------

    def _lock(self, grant_id: str) -> asyncio.Lock:
        return self._locks.setdefault(grant_id, asyncio.Lock())

    async def _guarded(self, doing: str, work: Awaitable[None], grant: Grant) -> bool:
        """Await ``work``; log anything it raises, so one failure never stops the rest.

        False when it failed for a reason that may pass (worth telling again later).
        """
        try:
            await work
        except Exception as exc:
            passing = is_passing(exc) or isinstance(exc, MessagesDelayed)
            log.log(
                logging.WARNING if passing else logging.ERROR,
                "could not %s for grant %s (%s)%s",
                doing,
                grant.id,
                error_code(exc),
                "; telling it again later" if passing else "",
                exc_info=not passing,
                extra={"grant_id": grant.id},
            )
            return not passing
        return True


def _on_card(grant: Grant) -> tuple[object, ...]:
    """What a redraw of the card depends on (besides the time)."""
    return (
        grant.state,
        grant.approvals,
        grant.duration_s,  # approved with changes
        grant.break_glass,
        grant.approvers_reminded_at,
        grant.escalated_at,
    )


def _nothing_more_to_tell(grant: Grant) -> bool:
    """An ended grant expects no more messages: no receipt to come, or it came verified."""
    expects_receipt = grant.kind == "access" and grant.state in (
        State.EXPIRED,
        State.REVOKED,
        State.FAILED,
    )
    return not expects_receipt or (grant.receipt is not None and grant.receipt.verified)
