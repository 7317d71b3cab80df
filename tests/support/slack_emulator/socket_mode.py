"""Socket Mode: ``apps.connections.open`` tickets, the WebSocket link, envelopes
sent to the app and the acks it returns."""

from __future__ import annotations

import json
import time
import uuid

from aiohttp import WSMsgType, web

from tests.support.patience import PATIENCE
from tests.support.slack_emulator.records import JSON, SocketAck


class _SocketMode:
    """Socket Mode (mixed into ``SlackEmulator``)."""

    def _api_apps_connections_open(self, params: JSON) -> JSON:
        ticket = str(uuid.uuid4())
        self._tickets.add(ticket)
        ws_root = self._root_url.replace("http://", "ws://", 1)
        return {"url": f"{ws_root}link/?ticket={ticket}&app_id={self.app_id}"}

    @property
    def socket_connections(self) -> int:
        """Number of currently connected Socket Mode clients."""
        return len(self._sockets)

    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("ticket") not in self._tickets:
            return web.Response(status=401, text="invalid ticket")
        ws = web.WebSocketResponse(timeout=2.0)
        await ws.prepare(request)
        self._sockets.append(ws)
        try:
            await ws.send_json(self._hello())
            self._notify()
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_socket_text(msg.data)
        finally:
            self._sockets.remove(ws)
            self._notify()
        return ws

    def _hello(self) -> JSON:
        return {
            "type": "hello",
            "num_connections": len(self._sockets),
            "debug_info": {
                "host": "applink-emulator",
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": self.app_id},
        }

    def _on_socket_text(self, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            return
        if isinstance(message, dict) and "envelope_id" in message:
            envelope_id = str(message["envelope_id"])
            payload = message.get("payload")
            self.socket_acks[envelope_id] = SocketAck(envelope_id, payload, time.time())
            self._notify()

    async def wait_socket_connected(self, count: int = 1, timeout: float = PATIENCE) -> None:
        """Wait until at least ``count`` Socket Mode clients are connected."""

        def connected() -> bool | None:
            return True if len(self._sockets) >= count else None

        def describe() -> str:
            return f"expected {count} Socket Mode connection(s), have {len(self._sockets)}"

        await self._wait_until(connected, timeout, describe)

    async def socket_send(
        self,
        payload_type: str,
        payload: JSON,
        *,
        accepts_response_payload: bool | None = None,
        retry_attempt: int = 0,
        retry_reason: str = "",
        timeout: float = PATIENCE,
    ) -> str:
        """Push an envelope (``events_api``, ``interactive``, ``slash_commands``).

        Waits up to ``timeout`` for a connected client; returns the envelope ID.
        """
        await self.wait_socket_connected(timeout=timeout)
        if accepts_response_payload is None:
            accepts_response_payload = _accepts_response_payload(payload_type, payload)
        envelope: JSON = {
            "envelope_id": str(uuid.uuid4()),
            "payload": payload,
            "type": payload_type,
            "accepts_response_payload": accepts_response_payload,
        }
        if payload_type == "events_api":
            envelope |= {"retry_attempt": retry_attempt, "retry_reason": retry_reason}
        await self._sockets[-1].send_json(envelope)
        self.socket_envelopes.append(envelope)
        return str(envelope["envelope_id"])

    async def socket_disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask every connected client to reconnect, as Slack does periodically."""
        message = {
            "type": "disconnect",
            "reason": reason,
            "debug_info": {"host": "applink-emulator"},
        }
        for ws in list(self._sockets):
            await ws.send_json(message)

    async def wait_socket_ack(self, envelope_id: str, timeout: float = PATIENCE) -> JSON | None:
        """Wait for the client's ack of ``envelope_id``; returns its payload (or None)."""

        def acked() -> SocketAck | None:
            return self.socket_acks.get(envelope_id)

        def describe() -> str:
            return f"no ack for envelope {envelope_id} within {timeout}s"

        ack = await self._wait_until(acked, timeout, describe)
        return ack.payload


def _accepts_response_payload(payload_type: str, payload: JSON) -> bool:
    if payload_type == "slash_commands":
        return True
    return payload_type == "interactive" and payload.get("type") in (
        "view_submission",
        "block_suggestion",
    )
