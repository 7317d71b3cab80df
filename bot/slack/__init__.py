"""AccessBot's Slack surface: commands, Block Kit, notifier, directory and Bolt listeners.

Wiring, in the order the composition root needs it (the notifier and directory
exist before the core; the Bolt app needs the core)::

    client = make_slack_client(bot_token, api_url)
    notifier = SlackNotifier(client, policy)
    directory = SlackDirectory(client)
    core = await build_core(policy, redis_url, notifier=notifier, directory=directory)
    app = build_slack_app(core=core, client=client, signing_secret=secret)

The listeners call use cases only (``core.workflow``, ``core.reports``,
``core.permissions``) and reach the notifier and the directory through
:mod:`bot.ports`; nothing here imports the store, the scheduler or ``k8s``.
"""

from __future__ import annotations

from bot.slack.app import build_slack_app
from bot.slack.client import make_slack_client
from bot.slack.directory import SlackDirectory
from bot.slack.notifier import SlackNotifier
from bot.usecases.reports import ReportAccess

__all__ = [
    "ReportAccess",
    "SlackDirectory",
    "SlackNotifier",
    "build_slack_app",
    "make_slack_client",
]
