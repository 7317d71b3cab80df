"""REDIS_SENTINELS / REDIS_SENTINEL_MASTER (with REDIS_URL's TLS and password) as
bot.redis_conn reads them; no server is contacted."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import SSLConnection
from redis.asyncio.sentinel import SentinelManagedConnection, SentinelManagedSSLConnection

from bot.redis_conn import SentinelTarget, parse_sentinels, redis_client, redis_target
from bot.settings import ConfigError, Settings, load_settings


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_sentinels_are_host_port_pairs_with_the_sentinel_default_port() -> None:
    assert parse_sentinels(" s1:26380, s2 ,[fd00::1]:5000,") == (
        ("s1", 26380), ("s2", 26379), ("fd00::1", 5000),
    )  # fmt: skip


@pytest.mark.parametrize("bad", ["", " , ", "s1:x", "s1:0", "s1:70000", "s1:1/db", "u@s1:1"])
def test_a_bad_sentinel_list_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is for the operator
        parse_sentinels(bad)


def test_without_sentinels_the_url_or_the_embedded_server() -> None:
    assert redis_target(settings()) is None
    assert redis_target(settings(redis_url="redis://r:6379/0")) == "redis://r:6379/0"


@pytest.mark.parametrize(
    ("values", "names"),
    [
        ({"redis_sentinels": "s1:26379"}, "REDIS_SENTINEL_MASTER"),
        ({"redis_sentinel_master": "mymaster"}, "REDIS_SENTINELS"),
        ({"redis_sentinels": "s1:x", "redis_sentinel_master": "m"}, "REDIS_SENTINELS"),
        (
            {"redis_sentinels": "s1", "redis_sentinel_master": "m", "redis_url": "unix:///r.sock"},
            "REDIS_URL",
        ),
    ],
)
def test_half_or_wrong_sentinel_settings_name_the_variable(
    values: dict[str, str], names: str
) -> None:
    with pytest.raises(ConfigError, match=names):
        redis_target(settings(**values))


def test_sentinel_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_SENTINELS", "s1:26379,s2:26379")
    monkeypatch.setenv("REDIS_SENTINEL_MASTER", "mymaster")
    monkeypatch.setenv("REDIS_URL", "rediss://:pw@ignored:1/2")
    target = redis_target(load_settings())
    assert target == SentinelTarget(
        (("s1", 26379), ("s2", 26379)), "mymaster", "rediss://:pw@ignored:1/2"
    )
    assert "pw" not in str(target)
    assert str(target) == "master 'mymaster' of sentinels s1:26379,s2:26379 (TLS)"


def test_the_master_gets_tls_password_and_database_the_sentinels_tls_only() -> None:
    url = "rediss://app:s3cret@ignored:1/3?ssl_ca_certs=/ca.pem&ssl_cert_reqs=required"
    client = redis_client(SentinelTarget((("s1", 26379), ("s2", 26380)), "mymaster", url))
    pool: Any = client.connection_pool
    kwargs = pool.connection_kwargs
    assert pool.connection_class is SentinelManagedSSLConnection
    assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("app", "s3cret", 3)
    assert kwargs["ssl_ca_certs"] == "/ca.pem"
    assert "host" not in kwargs  # the sentinels say where the master is
    assert kwargs["socket_timeout"] == 5.0
    assert kwargs["retry"].get_retries() == 2
    sentinels = pool.sentinel_manager.sentinels
    assert [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs[
        "port"]) for s in sentinels] == [("s1", 26379), ("s2", 26380)]  # fmt: skip
    for s in sentinels:
        assert s.connection_pool.connection_class is SSLConnection
        assert s.connection_pool.connection_kwargs.get("password") is None
        assert s.connection_pool.connection_kwargs["ssl_ca_certs"] == "/ca.pem"


def test_without_redis_url_plain_tcp_and_no_password() -> None:
    client = redis_client(SentinelTarget((("s1", 26379),), "mymaster"))
    pool: Any = client.connection_pool
    assert pool.connection_class is SentinelManagedConnection
    assert pool.connection_kwargs.get("password") is None
    assert pool.service_name == "mymaster"
