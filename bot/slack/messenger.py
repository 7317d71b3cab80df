"""Posting to Slack for the notifier: messages and DMs (the DM channel opened once per
person), and what happens when Slack refuses: a clear log line, and for set-up
mistakes no retry fixes (``channel_not_found``, ``not_in_channel``,
``missing_scope``) a DM to the admins, at most once per interval each."""

from __future__ import annotations

import logging
import time

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import MessagesDelayed, PermanentFailure
from bot.models import Grant, MessageRef
from bot.policy import Policy
from bot.slack.blocks import Message, info_message
from bot.slack.blocks.alerts import NO_DM_CHANNEL, slack_refused
from bot.slack.client import CONFIG_ERRORS, error_code
from bot.slack.directory import SlackDirectory
from bot.slack.retry_after import is_passing, patiently

__all__ = ["ALERT_INTERVAL_SECONDS", "DeliveryFailed", "SlackMessenger"]

log = logging.getLogger(__name__)

# The same set-up problem is told to the admins at most this often.
ALERT_INTERVAL_SECONDS = 600.0


class DeliveryFailed(PermanentFailure, ValueError):
    """The kubeconfig cannot be delivered; the message is for the requester.

    A :class:`PermanentFailure`: the provisioning saga marks the grant failed and
    removes the access instead of leaving credentials nobody received. (Also a
    ``ValueError`` while the saga still catches that; see issue 13, item 4.)
    """


class SlackMessenger:
    """Posts messages and DMs, and tells the admins about Slack set-up mistakes.

    Parameters:
        client: the Slack Web API client (rate limits retried by its handlers).
        policy: whose ``admins`` (users and ``@usergroups``) get the alerts.
        directory: resolves ``@usergroup`` admins to people.
        alert_interval_seconds: the same alert (by key) goes out at most once
            per this many seconds. Default :data:`ALERT_INTERVAL_SECONDS` (600).
    """

    def __init__(
        self,
        client: AsyncWebClient,
        policy: Policy,
        directory: SlackDirectory,
        *,
        alert_interval_seconds: float = ALERT_INTERVAL_SECONDS,
    ) -> None:
        self.client = client
        self._policy = policy
        self._directory = directory
        self._alert_interval_seconds = alert_interval_seconds
        self._dm_channels: dict[str, str] = {}
        self._alerted: dict[str, float] = {}

    async def dm_channel(self, user: str) -> str:
        """The ``D…`` channel of the bot's DM with ``user`` (opened once, then cached).

        Raises ``SlackClientError``, or :class:`DeliveryFailed` when Slack opens none.
        """
        channel = self._dm_channels.get(user)
        if channel is None:
            resp = await self.client.conversations_open(users=user)
            channel = str((resp.get("channel") or {}).get("id") or "")
            if not channel:
                raise DeliveryFailed(NO_DM_CHANNEL)
            self._dm_channels[user] = channel
        return channel

    async def post(self, channel: str, message: Message) -> MessageRef:
        """``chat.postMessage`` without unfurling, waiting out 429s
        (:func:`bot.slack.retry_after.patiently`); raises ``SlackClientError``."""
        resp = await patiently(
            lambda: self.client.chat_postMessage(
                channel=channel, unfurl_links=False, unfurl_media=False, **message.as_kwargs()
            )
        )
        return MessageRef(channel=str(resp.get("channel") or channel), ts=str(resp.get("ts")))

    async def dm(self, user: str, message: Message) -> MessageRef | None:
        """Send ``message`` to ``user`` privately; None (logged, alerted) when Slack refused.

        Raises what may pass (:func:`bot.slack.retry_after.is_passing`: no answer, Slack's
        own trouble, a rate limit that outlasted the waiting), so the caller can try later.
        """
        try:
            return await self.post(await self.dm_channel(user), message)
        except SlackClientError as exc:
            if is_passing(exc):
                raise
            await self.trouble("send a direct message", exc, user, None)
            return None

    async def trouble(
        self, doing: str, exc: SlackClientError, where: str, grant: Grant | None
    ) -> None:
        """Log that Slack refused ``doing`` in ``where``; alert the admins if no retry helps."""
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
            needed = ""
            if isinstance(exc, SlackApiError) and isinstance(exc.response.data, dict):
                needed = str(exc.response.data.get("needed") or "")
            text = slack_refused(doing, where, code, needed)
            try:
                await self.alert_admins(text, key=f"{code}:{where}")
            except MessagesDelayed:
                log.warning("could not alert the admins that Slack refused to %s", doing)

    async def alert_admins(self, text: str, *, key: str) -> None:
        """DM every admin ``text`` (plain), at most once per alert interval per ``key``.

        Raises :class:`MessagesDelayed` when some admin could not be told for a reason
        that may pass; the alert is then not counted as given, so a retry sends it.
        """
        now = time.monotonic()
        last = self._alerted.get(key)
        if last is not None and now - last < self._alert_interval_seconds:
            return
        self._alerted[key] = now
        delayed = False
        for admin in await self._admins():
            try:
                await self.post(await self.dm_channel(admin), info_message(text))
            except (SlackClientError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                delayed = delayed or is_passing(exc)
                # Do not alert about alerting: that could loop.
                log.error("could not alert admin %s: %s", admin, error_code(exc))
        if delayed:
            self._alerted.pop(key, None)
            raise MessagesDelayed(f"an admin alert ({key}) could not be sent yet")

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
