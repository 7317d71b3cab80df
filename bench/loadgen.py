"""An open-loop load generator of signed Slack deliveries, in its own process.

    python -m bench.loadgen SPEC.json   # prints a JSON result

Request i is due at ``start + i / rate`` whatever happened to earlier ones (open loop:
a slow server does not slow the arrivals), and its latency is counted from that due
time, so generator lateness is never hidden (no coordinated omission). The count is
``rate * duration`` and every request has a timeout: the run is bounded in count and
time. Only 127.0.0.1 is accepted as a target.

Running apart from the benchmark process keeps the Slack emulator's work (which
answers the bot's follow-up calls) off the generator's event loop.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bench.common import python_cmd, python_env
from tests.support.slack_signing import block_actions_body, sign, slash_command_body

START_DELAY = 0.2  # seconds between building the plan and the first request


@dataclass(frozen=True)
class Click:
    action_id: str
    value: str
    user: str
    channel: str
    message: dict[str, Any]


@dataclass(frozen=True)
class LoadSpec:
    url: str
    secret: str
    rate: float
    duration: float
    kinds: list[str]  # cycled: "command", "click"
    command: str  # "/access list" style: command word, then text
    command_user: str
    click: Click
    response_base: str  # response_url of request i is response_base + tag + "-" + i
    tag: str
    timeout: float = 10.0

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> LoadSpec:
        return cls(**{**doc, "click": Click(**doc["click"])})


@dataclass
class LoadResult:
    sent: int
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)  # kind -> latencies
    errors: dict[str, int] = field(default_factory=dict)  # "kind: reason" -> count
    max_send_lateness_ms: float = 0.0


def _body(spec: LoadSpec, kind: str, i: int) -> bytes:
    response_url = f"{spec.response_base}{spec.tag}-{i}"
    if kind == "command":
        word, _, text = spec.command.partition(" ")
        return slash_command_body(word, text, spec.command_user, response_url=response_url)
    c = spec.click
    return block_actions_body(
        c.action_id,
        c.value,
        c.user,
        c.channel,
        str(c.message["ts"]),
        message=c.message,
        response_url=response_url,
    )


async def generate(spec: LoadSpec) -> LoadResult:
    if urlsplit(spec.url).hostname != "127.0.0.1":
        raise ValueError("the load generator only talks to 127.0.0.1")
    n = int(spec.rate * spec.duration)
    kinds = [spec.kinds[i % len(spec.kinds)] for i in range(n)]
    # Signed up front: a signature stays valid for 5 minutes, far longer than a run.
    plan = [
        (kind, body, sign(spec.secret, body))
        for i, kind in enumerate(kinds)
        for body in [_body(spec, kind, i)]
    ]
    result = LoadResult(sent=n, latencies_ms={k: [] for k in spec.kinds})
    errors: Counter[str] = Counter()
    timeout = aiohttp.ClientTimeout(total=spec.timeout)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        loop = asyncio.get_running_loop()
        start = loop.time() + START_DELAY

        async def one(kind: str, body: bytes, headers: dict[str, str], due: float) -> None:
            try:
                async with http.post(spec.url, data=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors[f"{kind}: HTTP {resp.status}"] += 1
                        return
            except TimeoutError:
                errors[f"{kind}: timeout {spec.timeout:g} s"] += 1
                return
            except aiohttp.ClientError as exc:
                errors[f"{kind}: {type(exc).__name__}"] += 1
                return
            result.latencies_ms[kind].append((loop.time() - due) * 1000)

        tasks = []
        for i, (kind, body, headers) in enumerate(plan):
            due = start + i / spec.rate
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            lateness = (loop.time() - due) * 1000
            result.max_send_lateness_ms = max(result.max_send_lateness_ms, lateness)
            tasks.append(asyncio.create_task(one(kind, body, headers, due)))
        await asyncio.gather(*tasks)
    result.errors = dict(errors)
    return result


def main() -> None:
    spec = LoadSpec.from_json(json.loads(Path(sys.argv[1]).read_text()))
    started = time.monotonic()
    result = asyncio.run(generate(spec))
    print(json.dumps({**asdict(result), "wall_s": time.monotonic() - started}))


if __name__ == "__main__":
    main()


async def run_in_child(spec: LoadSpec, scratch: Path) -> LoadResult:
    """Run one load in a child process (see the module doc); returns its result."""
    spec_file = scratch / f"load-{spec.tag}.json"
    spec_file.write_text(json.dumps(asdict(spec)))
    proc = await asyncio.create_subprocess_exec(
        *python_cmd("bench.loadgen", str(spec_file)),
        env=python_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"load generator exited {proc.returncode}: {err.decode()[-2000:]}")
    doc = json.loads(out)
    doc.pop("wall_s", None)
    return LoadResult(**doc)
