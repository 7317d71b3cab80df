"""The chart's Redis Sentinel values (redis.sentinels, redis.sentinelMaster, the URL
secret for TLS and password, redis.tlsSecret) as helm renders them, and the
rendered environment read back by the bot's own settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.redis_conn import SentinelTarget, redis_target
from bot.settings import load_settings
from tests.deploy.chart import CHART, documents, one, run_helm, template

SENTINELS = ["redis-sentinel-0.redis:26379", "redis-sentinel-1.redis:26379", "[fd00::7]:26380"]
HA = {
    "redis": {
        "bundled": {"enabled": False},
        "sentinels": SENTINELS,
        "sentinelMaster": "mymaster",
        "existingSecret": "redis-auth",
        "existingSecretKey": "url",
        "tlsSecret": "redis-ca",
    }
}


def values_file(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def render(
    testenv_bin: Path, helm_home: Path, tmp_path: Path, values: dict[str, Any]
) -> list[dict[str, Any]]:
    return documents(template(testenv_bin, helm_home, values=[values_file(tmp_path, values)]))


def bot_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return container


def test_sentinel_values_lint_strict(testenv_bin: Path, helm_home: Path, tmp_path: Path) -> None:
    run_helm(testenv_bin, helm_home, "lint", "--strict", str(CHART), "-f",
             str(values_file(tmp_path, HA)))  # fmt: skip


def test_sentinels_render_into_the_env_the_bot_reads(
    testenv_bin: Path, helm_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = render(testenv_bin, helm_home, tmp_path, HA)
    assert not [d for d in docs if d["kind"] == "StatefulSet"], "no bundled Redis with sentinels"
    container = bot_container(docs)
    env = {e["name"]: e for e in container["env"]}
    assert env["REDIS_SENTINELS"]["value"] == ",".join(SENTINELS)
    assert env["REDIS_SENTINEL_MASTER"]["value"] == "mymaster"
    # TLS and password come from the URL secret, as without Sentinel.
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "redis-auth", "key": "url"}
    assert "REDIS_PASSWORD" not in env
    mount = next(m for m in container["volumeMounts"] if m["name"] == "redis-tls")
    assert mount == {"name": "redis-tls", "mountPath": "/etc/accessbot/redis-tls",
                     "readOnly": True}  # fmt: skip
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "redis-tls")
    assert volume["secret"]["secretName"] == "redis-ca"
    # The sentinels' ports are open besides the data nodes' port.
    egress = one(docs, "NetworkPolicy")["spec"]["egress"]
    ports = {p["port"] for rule in egress for p in rule.get("ports", [])}
    assert {6379, 26379, 26380} <= ports

    # What the pod gets is what the bot understands.
    monkeypatch.setenv("REDIS_SENTINELS", env["REDIS_SENTINELS"]["value"])
    monkeypatch.setenv("REDIS_SENTINEL_MASTER", env["REDIS_SENTINEL_MASTER"]["value"])
    monkeypatch.setenv(
        "REDIS_URL", "rediss://:pw@unused/0?ssl_ca_certs=/etc/accessbot/redis-tls/ca"
    )
    target = redis_target(load_settings())
    assert isinstance(target, SentinelTarget)
    assert target.sentinels == (
        ("redis-sentinel-0.redis", 26379), ("redis-sentinel-1.redis", 26379), ("fd00::7", 26380),
    )  # fmt: skip
    assert target.service == "mymaster"


def test_sentinels_without_a_url_secret(testenv_bin: Path, helm_home: Path, tmp_path: Path) -> None:
    values = {"redis": {"bundled": {"enabled": False}, "sentinels": SENTINELS[:1],
                        "sentinelMaster": "mymaster"}}  # fmt: skip
    docs = render(testenv_bin, helm_home, tmp_path, values)
    names = [e["name"] for e in bot_container(docs)["env"]]
    assert "REDIS_SENTINELS" in names
    assert "REDIS_URL" not in names
    assert "REDIS_PASSWORD" not in names


@pytest.mark.parametrize(
    ("redis", "message"),
    [
        ({"bundled": {"enabled": False}, "sentinels": SENTINELS},
         "redis.sentinels needs redis.sentinelMaster"),
        ({"sentinels": SENTINELS, "sentinelMaster": "m"}, "set redis.bundled.enabled=false"),
        ({"bundled": {"enabled": False}, "url": "redis://r:6379/0", "sentinelMaster": "m"},
         "redis.sentinelMaster is set but redis.sentinels is empty"),
        ({"bundled": {"enabled": False}, "sentinels": SENTINELS, "sentinelMaster": "m",
          "url": "unix:///redis.sock"}, "redis:// or rediss:// with redis.sentinels"),
        ({"bundled": {"enabled": False}, "sentinels": ["sentinel-without-port"],
          "sentinelMaster": "m"}, "values don't meet the specifications of the schema"),
    ],
)  # fmt: skip
def test_sentinel_values_that_cannot_work_fail_with_a_clear_message(
    testenv_bin: Path, helm_home: Path, tmp_path: Path, redis: dict[str, Any], message: str
) -> None:
    out = run_helm(testenv_bin, helm_home, "template", "ab", str(CHART), "-f",
                   str(values_file(tmp_path, {"redis": redis})), check=False)  # fmt: skip
    assert out.returncode != 0
    assert message in out.stderr, out.stderr
