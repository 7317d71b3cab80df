"""``bot.ports.Notifier`` on Slack: approval cards, requester DMs, audit channel, kubeconfigs.

Failures here never undo or block a state change: the store commits first and
calls :meth:`SlackNotifier.grant_changed` afterwards, and every Slack call below
is wrapped so that one failing message (say, the audit channel was archived)
does not stop the others. Rate limits are honoured by the client's retry
handlers (:func:`bot.slack.client.make_slack_client`). Set-up mistakes that no
retry fixes (``channel_not_found``, ``not_in_channel``, ``missing_scope``) are
logged clearly and told to the admins by DM, at most once per interval each.

The kubeconfig upload is the only call that ever carries a token; nothing about
it is logged but the file id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.audit import new_steps
from bot.errors import PermanentFailure
from bot.lifecycle import State
from bot.models import Grant, MessageRef, utcnow
from bot.policy import Policy
from bot.slack.blocks import (
    PERMISSIONS_CHECKING,
    Message,
    Permissions,
    allowance_file,
    allowance_file_name,
    allowance_fits,
    approval_card,
    audit_message,
    ended_dm,
    info_message,
    receipt_dm,
    receipt_message,
    reminder_message,
    requester_update,
)
from bot.slack.client import CONFIG_ERRORS, error_code
from bot.slack.directory import SlackDirectory
from bot.slack.text import escape
from k8s.clients import ClusterRegistry
from k8s.errors import ClusterError
from k8s.rbac import Allowance, AllowanceCache

__all__ = ["DeliveryFailed", "SlackNotifier"]

log = logging.getLogger(__name__)

# How long a new card waits for its role's permissions before it is posted saying
# "permissions being checked" (and updated in place once they are known).
CARD_PATIENCE_SECONDS = 1.0
# Past this, a permission check that still has no answer is reported as failed.
CHECK_LIMIT_SECONDS = 60.0

# Errors worth another attempt later (the scheduler retries the delivery job).
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)

# The audit steps that carry a revocation receipt (see Workflow._receipt).
RECEIPT_EVENTS = frozenset({"verified", "verification_failed"})

_HINTS = {
    "channel_not_found": "Check the channel ID in the policy file; the channel may be gone.",
    "not_in_channel": "Invite the app to that channel (/invite @AccessBot).",
    "is_archived": "The channel is archived: unarchive it or change the policy file.",
    "missing_scope": "Add the missing OAuth scope to the app and reinstall it.",
}


class DeliveryFailed(PermanentFailure, ValueError):
    """The kubeconfig cannot be delivered; the message is for the requester.

    A ``ValueError`` so the workflow marks the grant failed and removes the
    access instead of leaving credentials nobody received.
    """


class SlackNotifier:
    """Tells people about requests and grants through Slack."""

    def __init__(
        self,
        client: AsyncWebClient,
        policy: Policy,
        *,
        directory: SlackDirectory | None = None,
        clock: Callable[[], datetime] = utcnow,
        alert_interval: float = 600.0,
    ) -> None:
        self._client = client
        self._policy = policy
        self._directory = directory or SlackDirectory(client)
        self._clock = clock
        self._alert_interval = alert_interval
        self._dm_channels: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._card_versions: dict[str, int] = {}
        self._alerted: dict[str, float] = {}
        self._clusters: ClusterRegistry | None = None
        self._allowances = AllowanceCache()
        self._checks: dict[tuple[str, str, bool], asyncio.Task[Permissions]] = {}
        self._latest: dict[str, Grant] = {}
        self._filling: set[str] = set()
        # The "access granted" DM of each live grant, to mark it ended later.
        # Process memory: after a restart the receipt DM alone says it ended.
        self._granted_dms: dict[str, MessageRef] = {}
        self._background: set[asyncio.Task[None]] = set()

    # -- what a role allows ------------------------------------------------------------------

    def use_clusters(self, clusters: ClusterRegistry) -> None:
        """Read roles' permissions from these clusters for cards, forms and ``/access roles``."""
        self._clusters = clusters

    def permissions_check(
        self, cluster: str, cluster_role: str, *, namespaced: bool
    ) -> asyncio.Task[Permissions]:
        """What ``cluster_role`` allows on ``cluster``, read now (or joining a read under way).

        Every new check asks the cluster whether the ClusterRole changed (see
        ``AllowanceCache``); the task never raises: a problem is returned as words.
        """
        key = (cluster, cluster_role, namespaced)
        task = self._checks.get(key)
        if task is None or task.done():
            task = asyncio.create_task(self._check(*key))
            self._checks[key] = task
        return task

    async def _check(self, cluster: str, cluster_role: str, namespaced: bool) -> Permissions:
        if self._clusters is None:
            return "AccessBot has no cluster connection here"
        try:
            async with asyncio.timeout(CHECK_LIMIT_SECONDS):
                return await self._allowances.allowance(
                    self._clusters[cluster], cluster_role, namespaced=namespaced
                )
        except ClusterError as exc:
            return str(exc)
        except TimeoutError:
            return f"cluster {cluster} did not answer within {CHECK_LIMIT_SECONDS:.0f}s"
        except Exception as exc:  # never let a card go without an answer
            log.exception("checking ClusterRole %s on %s failed", cluster_role, cluster)
            return f"unexpected error ({exc.__class__.__name__})"

    def _known(self, grant: Grant) -> Permissions:
        """The latest permissions known for the grant's role, without waiting."""
        namespaced = grant.namespace is not None
        task = self._checks.get((grant.cluster, grant.cluster_role, namespaced))
        if task is not None and task.done():
            return task.result()
        return self._allowances.peek(grant.cluster, grant.cluster_role, namespaced=namespaced)

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
                card = approval_card(grant, self._policy, permissions)
                try:
                    await self._client.chat_update(
                        channel=ref.channel, ts=ref.ts, **card.as_kwargs()
                    )
                except SlackClientError as exc:
                    await self._trouble("update an approval card", exc, ref.channel, grant)
                    return
            await self._attach_full_list(ref, permissions)
        except Exception:
            log.exception("could not fill in the permissions of card %s", grant_id)
        finally:
            self._filling.discard(grant_id)
            grant = self._latest.get(grant_id)
            if grant is not None and grant.ended:
                self._latest.pop(grant_id, None)

    async def _attach_full_list(self, ref: MessageRef, permissions: Permissions) -> None:
        """When the summary did not fit the card: the full list as a file in its thread."""
        if not isinstance(permissions, Allowance) or not permissions.exists:
            return
        if allowance_fits(permissions):
            return
        name = allowance_file_name(permissions)
        try:
            await self._client.files_upload_v2(
                channel=ref.channel,
                thread_ts=ref.ts,
                content=allowance_file(permissions).encode(),
                filename=name,
                title=name,
            )
        except SlackClientError as exc:
            log.error("could not attach %s to the card: %s", name, error_code(exc))

    # -- Notifier ------------------------------------------------------------------------

    async def post_card(self, grant: Grant) -> MessageRef | None:
        """Post the card at once: with the role's permissions if they are known within
        CARD_PATIENCE_SECONDS, else saying they are being checked (then filled in)."""
        channel = self._policy.approvals_channel
        check = self.permissions_check(
            grant.cluster, grant.cluster_role, namespaced=grant.namespace is not None
        )
        try:
            permissions = await asyncio.wait_for(asyncio.shield(check), CARD_PATIENCE_SECONDS)
        except TimeoutError:
            permissions = PERMISSIONS_CHECKING
        card = approval_card(grant, self._policy, permissions)
        try:
            resp = await self._client.chat_postMessage(
                channel=channel, unfurl_links=False, unfurl_media=False, **card.as_kwargs()
            )
        except SlackClientError as exc:
            await self._trouble("post an approval card", exc, channel, grant)
            return None
        self._card_versions[grant.id] = grant.version
        ref = MessageRef(channel=str(resp["channel"]), ts=str(resp["ts"]))
        self._latest.setdefault(grant.id, grant)
        if permissions is PERMISSIONS_CHECKING:
            self._spawn(self._fill_in_later(grant.id, ref, check))
        else:
            self._spawn(self._attach_full_list(ref, permissions))
        return ref

    async def deliver_kubeconfig(self, grant: Grant, filename: str, content: bytes) -> str:
        """Upload the file into the requester's DM; returns the Slack file id."""
        try:
            channel = await self._dm(grant.requester)
            resp = await self._client.files_upload_v2(
                channel=channel,
                content=content,
                filename=filename,
                title=filename,
                initial_comment=f"Your kubeconfig for grant `{escape(grant.id)}`.",
            )
        except SlackApiError as exc:
            code = error_code(exc)
            if code in TRANSIENT_ERRORS:
                raise  # the provisioning job runs again later
            await self._trouble("send a kubeconfig", exc, grant.requester, grant)
            raise DeliveryFailed(
                f"the kubeconfig could not be sent to you on Slack ({code})"
            ) from None
        file = resp.get("file") or {}
        file_id = str(file.get("id") or "")
        log.info("kubeconfig for grant %s delivered as %s", grant.id, file_id)
        return file_id

    async def grant_changed(self, before: Grant, after: Grant) -> None:
        """Tell everyone about a committed change.

        An access grant's end and its receipt are told in the background: the
        store calls this before the workflow goes on to delete the objects
        and verify, and revocation must never wait on Slack. The per-grant
        lock (FIFO) keeps the end message before the receipt.
        """
        latest = self._latest.get(after.id)
        if latest is None or latest.version <= after.version:
            self._latest[after.id] = after
        if after.kind == "access" and after.ended:
            task = asyncio.create_task(self._changed(before, after))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return
        await self._changed(before, after)

    async def flush(self, budget_seconds: float = 5.0) -> None:
        """Wait (at most ``budget_seconds``) for messages still being sent in the background."""
        pending = set(self._background)
        if pending:
            await asyncio.wait(pending, timeout=budget_seconds)

    async def _changed(self, before: Grant, after: Grant) -> None:
        async with self._lock(after.id):
            await self._guarded("update the approval card", self._update_card(before, after), after)
            await self._guarded("message the requester", self._tell_requester(before, after), after)
            await self._guarded("post to the audit channel", self._audit(before, after), after)
            if after.receipt is not None and after.receipt != before.receipt:
                await self._guarded("send the receipt", self._receipt(before, after), after)
        if after.ended and after.id not in self._filling and _nothing_more_to_tell(after):
            self._locks.pop(after.id, None)
            self._latest.pop(after.id, None)

    async def remind(self, grant: Grant) -> None:
        message = reminder_message(grant, self._clock())
        await self._guarded("send a reminder", self.send_dm(grant.requester, message), grant)

    # -- the three audiences ---------------------------------------------------------------

    async def _update_card(self, before: Grant, after: Grant) -> None:
        if after.card is None:
            return
        if not after.is_new and (before.state, before.approvals) == (
            after.state,
            after.approvals,
        ):
            return  # nothing the card shows has changed
        if after.version < self._card_versions.get(after.id, -1):
            return  # a newer change already drew the card
        self._card_versions[after.id] = after.version
        card = approval_card(after, self._policy, self._known(after))
        try:
            await self._client.chat_update(
                channel=after.card.channel, ts=after.card.ts, **card.as_kwargs()
            )
        except SlackClientError as exc:
            await self._trouble("update an approval card", exc, after.card.channel, after)

    async def _tell_requester(self, before: Grant, after: Grant) -> None:
        message = requester_update(before, after, self._policy, self._clock())
        if message is None:
            return
        ref = await self._send_dm(after.requester, message)
        if ref is not None and after.state == State.ACTIVE and before.state != State.ACTIVE:
            self._granted_dms[after.id] = ref

    async def _receipt(self, before: Grant, after: Grant) -> None:
        """A new receipt: the requester's copy, the file deleted, the DM marked ended.

        Runs after the store recorded the receipt, so never before the deletes
        and the verification. The hygiene is done once, at the first receipt;
        each step logs its own failure and never stops the next.
        """
        receipt = after.receipt
        assert receipt is not None
        if not receipt.verified:
            await self.alert_admins(
                f"AccessBot could not verify that grant {after.id}'s access on cluster "
                f"{after.cluster} is gone; it keeps cleaning up. See the audit channel.",
                key=f"receipt:{after.id}",
            )
        elif after.delivered_file:
            await self._send_dm(after.requester, receipt_dm(after, receipt))
        if before.receipt is not None or not after.delivered_file:
            return
        for file_id in (after.delivered_file, *after.later_files):
            await self._delete_file(file_id, after)
        ref = self._granted_dms.pop(after.id, None)
        if ref is not None:
            try:
                await self._client.chat_update(
                    channel=ref.channel, ts=ref.ts, **ended_dm(after).as_kwargs()
                )
            except SlackClientError as exc:
                await self._trouble("mark the access DM ended", exc, ref.channel, after)

    async def _delete_file(self, file_id: str, grant: Grant) -> None:
        """``files.delete`` the kubeconfig the bot uploaded (a bot may delete its own files)."""
        try:
            await self._client.files_delete(file=file_id)
        except SlackApiError as exc:
            if error_code(exc) == "file_deleted":
                return
            await self._trouble("delete a kubeconfig file", exc, file_id, grant)
        except SlackClientError as exc:
            await self._trouble("delete a kubeconfig file", exc, file_id, grant)
        else:
            log.info("kubeconfig %s of grant %s deleted from Slack", file_id, grant.id)

    async def _audit(self, before: Grant, after: Grant) -> None:
        channel = self._policy.audit_channel
        if channel is None:
            return
        created = after.is_new
        steps = after.history if created else new_steps(before, after)
        messages = [audit_message(after, None)] if created else []
        messages += [
            receipt_message(after, after.receipt)
            if step.event in RECEIPT_EVENTS and after.receipt is not None
            else audit_message(after, step)
            for step in steps
        ]
        for message in messages:
            try:
                await self._post(channel, message)
            except SlackClientError as exc:
                await self._trouble("post to the audit channel", exc, channel, after)
                return

    # -- plumbing -------------------------------------------------------------------------------

    def _lock(self, grant_id: str) -> asyncio.Lock:
        return self._locks.setdefault(grant_id, asyncio.Lock())

    async def _guarded(self, doing: str, work: Awaitable[None], grant: Grant) -> None:
        """Await ``work``; log anything it raises, so one failure never stops the rest."""
        try:
            await work
        except Exception as exc:
            log.exception(
                "could not %s for grant %s (%s)",
                doing,
                grant.id,
                error_code(exc),
                extra={"grant_id": grant.id},
            )

    async def _dm(self, user: str) -> str:
        """The ``D…`` channel of the bot's DM with ``user`` (opened once, then cached)."""
        channel = self._dm_channels.get(user)
        if channel is None:
            resp = await self._client.conversations_open(users=user)
            channel = str((resp.get("channel") or {}).get("id") or "")
            if not channel:
                raise DeliveryFailed("Slack did not open a direct message channel")
            self._dm_channels[user] = channel
        return channel

    async def _post(self, channel: str, message: Message) -> MessageRef:
        resp = await self._client.chat_postMessage(
            channel=channel, unfurl_links=False, unfurl_media=False, **message.as_kwargs()
        )
        return MessageRef(channel=str(resp.get("channel") or channel), ts=str(resp.get("ts")))

    async def _send_dm(self, user: str, message: Message) -> MessageRef | None:
        try:
            return await self._post(await self._dm(user), message)
        except SlackClientError as exc:
            await self._trouble("send a direct message", exc, user, None)
            return None

    async def send_dm(self, user: str, message: Message) -> None:
        """Send ``message`` to ``user`` privately; failures are logged, never raised."""
        await self._send_dm(user, message)

    # -- trouble ----------------------------------------------------------------------------------

    async def _trouble(
        self, doing: str, exc: SlackClientError, where: str, grant: Grant | None
    ) -> None:
        code = error_code(exc)
        grant_id = grant.id if grant else "-"
        log.error(
            "Slack refused to %s in %s: %s (grant %s)",
            doing,
            where,
            code,
            grant_id,
            extra={"slack_error": code, "slack_target": where, "grant_id": grant_id},
        )
        if code in CONFIG_ERRORS:
            await self.alert_admins(_alert_text(doing, where, code, exc), key=f"{code}:{where}")

    async def alert_admins(self, text: str, *, key: str) -> None:
        """DM every admin ``text`` (plain), at most once per ``alert_interval`` per ``key``."""
        now = time.monotonic()
        last = self._alerted.get(key)
        if last is not None and now - last < self._alert_interval:
            return
        self._alerted[key] = now
        for admin in await self._admins():
            try:
                await self._post(await self._dm(admin), info_message(text))
            except SlackClientError as exc:
                # Do not alert about alerting: that could loop.
                log.error("could not alert admin %s: %s", admin, error_code(exc))

    async def _admins(self) -> list[str]:
        users: set[str] = set()
        for principal in self._policy.admins:
            if principal.startswith("@"):
                try:
                    users |= await self._directory.members_of(principal)
                except (SlackClientError, OSError) as exc:
                    log.error("cannot resolve admin group %s: %s", principal, error_code(exc))
            else:
                users.add(principal)
        return sorted(users)


def _alert_text(doing: str, where: str, code: str, exc: SlackClientError) -> str:
    text = f"AccessBot could not {doing} ({where}): Slack answered {code}."
    needed = ""
    if isinstance(exc, SlackApiError) and isinstance(exc.response.data, dict):
        needed = str(exc.response.data.get("needed") or "")
    if needed:
        text += f" Scope needed: {needed}."
    hint = _HINTS.get(code)
    return f"{text} {hint}" if hint else text


def _nothing_more_to_tell(grant: Grant) -> bool:
    """An ended grant expects no more messages: no receipt to come, or it came verified."""
    expects_receipt = grant.kind == "access" and grant.state in (
        State.EXPIRED,
        State.REVOKED,
        State.FAILED,
    )
    return not expects_receipt or (grant.receipt is not None and grant.receipt.verified)
