"""The kubeconfig file in Slack: uploaded into the requester's DM (the only call that
ever carries a token; nothing about it is logged but the file id), and deleted
from Slack once the grant ended and its revocation was verified."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError, SlackClientError

from bot.models import Grant
from bot.slack.blocks.alerts import kubeconfig_comment, undeliverable
from bot.slack.client import error_code
from bot.slack.messenger import DeliveryFailed, SlackMessenger
from bot.slack.retry_after import is_transient

__all__ = ["delete_kubeconfigs", "deliver_kubeconfig"]

log = logging.getLogger(__name__)


async def deliver_kubeconfig(
    messenger: SlackMessenger, grant: Grant, filename: str, content: bytes
) -> str:
    """Upload the file into the requester's DM; returns the Slack file id.

    Raises the ``SlackApiError`` of a transient failure (the provisioning job
    runs again later) and :class:`DeliveryFailed` for any other refusal.
    """
    try:
        channel = await messenger.dm_channel(grant.requester)
        resp = await messenger.client.files_upload_v2(
            channel=channel,
            content=content,
            filename=filename,
            title=filename,
            initial_comment=kubeconfig_comment(grant),
        )
    except SlackApiError as exc:
        code = error_code(exc)
        if is_transient(code):
            raise  # the scheduler runs the delivery again later
        await messenger.trouble("send a kubeconfig", exc, grant.requester, grant)
        raise DeliveryFailed(undeliverable(code)) from None
    file = resp.get("file") or {}
    file_id = str(file.get("id") or "")
    log.info("kubeconfig for grant %s delivered as %s", grant.id, file_id)
    return file_id


async def delete_kubeconfigs(messenger: SlackMessenger, grant: Grant) -> None:
    """``files.delete`` every kubeconfig the bot uploaded for ``grant`` (a bot may
    delete its own files); each failure is logged and never stops the next."""
    if not grant.delivered_file:
        return
    for file_id in (grant.delivered_file, *grant.later_files):
        try:
            await messenger.client.files_delete(file=file_id)
        except SlackApiError as exc:
            if error_code(exc) == "file_deleted":
                continue
            await messenger.trouble("delete a kubeconfig file", exc, file_id, grant)
        except SlackClientError as exc:
            await messenger.trouble("delete a kubeconfig file", exc, file_id, grant)
        else:
            log.info("kubeconfig %s of grant %s deleted from Slack", file_id, grant.id)
