"""An HTTPS reverse proxy in front of the test apiserver that injects faults.

It terminates TLS with a certificate from the test CA, so clients verify it as
they would the apiserver, and forwards each request upstream: with the admin
client certificate when the request carries no bearer token, and without one
when it does (an x509 identity would otherwise win over the token). Faults are
drawn per request from a seeded RNG: added delay, a reset connection, a 500,
or a 429 with Retry-After, each in the shape the apiserver would answer.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from tests.support.cluster import TestCluster, free_port

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host",
                "content-encoding"}  # fmt: skip


@dataclass
class Faults:
    delay: float = 0.0  # probability of an added delay
    delay_seconds: float = 0.5
    reset: float = 0.0
    error: float = 0.0
    throttle: float = 0.0

    def off(self) -> None:
        self.delay = self.reset = self.error = self.throttle = 0.0


def _status(code: int, reason: str, message: str) -> bytes:
    return json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "message": message, "reason": reason, "code": code}).encode()  # fmt: skip


@dataclass
class FaultProxy:
    cluster: TestCluster
    faults: Faults = field(default_factory=Faults)
    seed: int = 42
    port: int = field(default_factory=free_port)
    injected: Counter[str] = field(default_factory=Counter)
    _runner: web.AppRunner | None = None
    _sessions: dict[bool, aiohttp.ClientSession] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def start(self) -> FaultProxy:
        self._rng = random.Random(self.seed)
        pki = self.cluster.pki
        pair = pki.issue("fault-proxy", "127.0.0.1", server=True)
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(str(pair.cert), str(pair.key))
        for with_cert in (True, False):
            ctx = ssl.create_default_context(cafile=str(pki.ca.cert))
            if with_cert:
                ctx.load_cert_chain(str(pki.admin.cert), str(pki.admin.key))
            self._sessions[with_cert] = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ctx, limit=64), auto_decompress=False
            )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=server_ctx).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        for s in self._sessions.values():
            await s.close()

    def kubeconfig(self, path: Path, context: str) -> Path:
        doc = self.cluster.kubeconfig_dict()
        doc["clusters"][0]["cluster"]["server"] = self.url
        doc["contexts"][0]["name"] = doc["current-context"] = context
        path.write_text(yaml.safe_dump(doc))
        return path

    def _fault(self) -> str | None:
        roll, f = self._rng.random(), self.faults
        for name, p in (("reset", f.reset), ("error", f.error), ("throttle", f.throttle),
                        ("delay", f.delay)):  # fmt: skip
            if roll < p:
                return name
            roll -= p
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        fault = self._fault()
        if fault:
            self.injected[fault] += 1
        if fault == "reset":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)  # never sent: the connection is gone
        if fault == "error":
            return web.Response(status=500, body=_status(500, "InternalError", "injected"),
                                content_type="application/json")  # fmt: skip
        if fault == "throttle":
            return web.Response(
                status=429, body=_status(429, "TooManyRequests", "injected"),
                content_type="application/json", headers={"Retry-After": "1"},
            )  # fmt: skip
        if fault == "delay":
            await asyncio.sleep(self.faults.delay_seconds)
        return await self._forward(request)

    async def _forward(self, request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        session = self._sessions["Authorization" not in request.headers]
        url = f"{self.cluster.server}{request.path_qs}"
        # Forward the body as is: aiohttp would add application/octet-stream to a
        # request without a Content-Type, which the apiserver refuses with 415.
        async with session.request(request.method, url, headers=headers,
                                   data=await request.read(),
                                   skip_auto_headers=("Content-Type",)) as up:  # fmt: skip
            body = await up.read()
            out: dict[str, Any] = {
                k: v for k, v in up.headers.items() if k.lower() not in _HOP_HEADERS
            }
            return web.Response(status=up.status, body=body, headers=out)
