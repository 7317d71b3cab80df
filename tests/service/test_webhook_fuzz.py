"""schemathesis drives /hooks/offboard from its OpenAPI document: never a 5xx.

Cases are generated from the published schema (valid and invalid bodies), sent
signed and unsigned to the real service over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import schemathesis
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.http import openapi, signing
from bot.http.app import HttpService
from bot.metrics import Metrics
from tests.support.cluster import TestCluster
from tests.support.harness import workflow_harness

pytestmark = pytest.mark.cluster
SECRET = "fuzz-secret"


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def test_offboard_webhook_never_5xx(
    redis_url: str, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path
) -> None:
    schema = schemathesis.openapi.from_dict(openapi.document())
    operation = schema["/hooks/offboard"]["POST"]
    cases = st.one_of(
        operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
        operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
    )
    async with workflow_harness(redis_url, {"a": cluster, "b": cluster_b}, tmp_path) as h:
        app = HttpService(h.core, Metrics(), offboard_secret=SECRET).build()
        async with TestServer(app, host="127.0.0.1") as server:
            url = str(server.make_url("/hooks/offboard"))
            seen: dict[int, int] = {}

            @settings(max_examples=150, deadline=None,
                      suppress_health_check=list(HealthCheck))  # fmt: skip
            @given(case=cases, signed=st.booleans(), raw=st.booleans())
            def fuzz(case: schemathesis.Case, signed: bool, raw: bool) -> None:
                body = (
                    case.body if raw and isinstance(case.body, bytes)
                    else json.dumps(case.body, default=str).encode()
                )  # fmt: skip
                ts = str(int(time.time()))
                headers = {"Content-Type": "application/json", "X-AccessBot-Timestamp": ts,
                           "X-AccessBot-Signature": signing.sign(SECRET if signed else "x", ts,
                                                                 body)}  # fmt: skip
                status = post(url, body, headers)
                seen[status] = seen.get(status, 0) + 1
                assert status < 500, f"{status} for {body[:200]!r}"

            await asyncio.to_thread(fuzz)
    assert set(seen) >= {400, 401, 404}, seen
    print(f"\nstatuses: {dict(sorted(seen.items()))}")
