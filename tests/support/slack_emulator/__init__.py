"""A local Slack: Web API, file uploads, response URLs and Socket Mode, on 127.0.0.1.

The only emulated party of our test bed, so it answers in Slack's real wire format
and enforces the limits Slack enforces (block counts, text lengths, token types).
Point the real ``slack_sdk`` / Bolt clients at it::

    async with SlackEmulator() as emu:
        emu.add_user("U0ALICE", email="alice@example.com")
        client = AsyncWebClient(token="xoxb-test", base_url=emu.base_url)
        await client.chat_postMessage(channel="C0APPROVALS", text="hi")
        (call,) = await emu.wait_for("chat.postMessage")

Every request is recorded (``calls``) after it has been answered, so once
``wait_for`` returns, the workspace state (``messages``, ``uploaded_files``, ...)
already reflects it. Deliberate leniency: channel IDs need not be registered
(``add_channel`` is only needed for ``#name`` lookups and ``conversations.*``), and
any ``U…``/``W…`` ID can be DMed; registered users are checked (deleted ones can't).

Modules: ``emulator`` (the server, call records, waiting), ``workspace`` (state),
``web_api`` (Web API methods), ``files`` (uploads), ``socket_mode``, ``limits``
(injected errors, rate limits, delays, stalls), ``blocks`` (Block Kit limits),
``records`` (recorded calls, replies, errors), ``wire`` (request parsing).

Slack under load, opted into per emulator (off by default)::

    SlackEmulator(channel_limit=ChannelLimit(per_second=1, burst=3), latency=0.1)

answers a ``chat.postMessage`` beyond a channel's limit with HTTP 429 and
``Retry-After``, and every call after 100 ms (see ``limits``).
"""

from tests.support.slack_emulator.blocks import block_errors, view_errors
from tests.support.slack_emulator.emulator import SlackEmulator
from tests.support.slack_emulator.limits import CHANNEL_LIMITED_METHODS, ChannelLimit
from tests.support.slack_emulator.records import (
    APP_TOKEN_METHODS,
    JSON,
    MESSAGE_BLOCK_LIMIT,
    MESSAGE_TEXT_LIMIT,
    RESPONSE_URL,
    UPLOAD_URL,
    VIEW_BLOCK_LIMIT,
    RecordedCall,
    SlackEmulatorTimeout,
    SlackError,
    SocketAck,
    UploadedFile,
    invalid_arguments,
)

__all__ = [
    "APP_TOKEN_METHODS",
    "CHANNEL_LIMITED_METHODS",
    "JSON",
    "MESSAGE_BLOCK_LIMIT",
    "MESSAGE_TEXT_LIMIT",
    "RESPONSE_URL",
    "UPLOAD_URL",
    "VIEW_BLOCK_LIMIT",
    "ChannelLimit",
    "RecordedCall",
    "SlackEmulator",
    "SlackEmulatorTimeout",
    "SlackError",
    "SocketAck",
    "UploadedFile",
    "block_errors",
    "invalid_arguments",
    "view_errors",
]
