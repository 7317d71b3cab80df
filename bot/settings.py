"""Process configuration from the environment (and ``.env``), per the contract."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.errors import PermanentFailure
from k8s.names import DNS_LABEL_RULE, is_dns_label


class ConfigError(PermanentFailure, ValueError):
    """A configuration problem, worded for the operator; one line."""


class Settings(BaseSettings):
    """The process configuration, read from the environment (names case-insensitive)
    and ``.env``; see CONTRACT.md for the contract's variables.

    :param slack_bot_token: the bot token (``xoxb-...``); required to serve.
    :param slack_signing_secret: verifies HTTP requests from Slack; required to serve
        in HTTP mode.
    :param slack_app_token: the app-level token (``xapp-...``); when set, the bot uses
        Socket Mode instead of HTTP. Default None.
    :param slack_api_url: Slack Web API base URL, default ``https://slack.com/api/``.
    :param redis_url: ``redis://`` URL of the store; None (default) runs a private
        redis-server under ``accessbot_data_dir``. With sentinels: TLS, password and
        database only (see :mod:`bot.redis_conn`).
    :param redis_sentinels: extension: ``host:port,...`` of Redis Sentinels; with
        ``redis_sentinel_master`` the bot uses the master they name. Default None.
    :param redis_sentinel_master: extension: the master's name in the sentinels.
    :param accessbot_data_dir: local state directory, default ``.accessbot``.
    :param accessbot_policy: the policy file, default ``policy.yaml``.
    :param accessbot_http_host: listen address, default ``0.0.0.0``.
    :param accessbot_http_port: listen port, 0-65535, default 8080.
    :param accessbot_offboard_secret: HMAC secret of ``/hooks/offboard``; None
        (default): the endpoint answers 404.
    :param kubeconfig: kubeconfig path for the clusters' contexts; None (default): the
        client's own default.
    :param accessbot_namespace: the namespace the bot runs in (never grantable);
        None (default): read from the pod's ServiceAccount (:func:`bot_namespace`).
    :param accessbot_log_format: ``json`` (default) or ``console``.
    :param accessbot_log_level: DEBUG, INFO (default), WARNING, ERROR or CRITICAL.
    :param accessbot_reconcile_seconds: seconds between reconciliation passes,
        default 60 (internal tunable).
    :param accessbot_lease_seconds: seconds a scheduler worker's claim on a job lasts
        without a heartbeat, default 30 (internal tunable).
    """

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    redis_url: str | None = None
    # Extension: Redis Sentinel (bot.redis_conn.redis_target reads and checks them).
    redis_sentinels: str | None = None
    redis_sentinel_master: str | None = None
    accessbot_data_dir: Path = Path(".accessbot")
    accessbot_policy: Path = Path("policy.yaml")
    accessbot_http_host: str = "0.0.0.0"  # noqa: S104 - a server in a pod listens on all
    accessbot_http_port: int = Field(8080, ge=0, le=65535)
    accessbot_offboard_secret: SecretStr | None = None
    kubeconfig: str | None = None
    # Extension: the namespace the bot runs in, which is never grantable. The chart
    # sets it from the downward API; in a pod without it the ServiceAccount
    # namespace file is read instead (see bot_namespace).
    accessbot_namespace: str | None = None
    accessbot_log_format: Literal["json", "console"] = "json"
    accessbot_log_level: str = "INFO"
    # Internal tunables (not part of the contract; useful in tests and drills).
    accessbot_reconcile_seconds: float = Field(60.0, gt=0)
    accessbot_lease_seconds: float = Field(30.0, gt=0)

    @field_validator("accessbot_log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("use DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    def require_serve(self) -> None:
        """What ``serve`` cannot start without; raises ConfigError naming the variable."""
        if self.slack_bot_token is None:
            raise ConfigError("SLACK_BOT_TOKEN is not set (the bot token, xoxb-…)")
        if not self.socket_mode and self.slack_signing_secret is None:
            raise ConfigError(
                "SLACK_SIGNING_SECRET is not set (required in HTTP mode; "
                "set SLACK_APP_TOKEN for Socket Mode instead)"
            )


# Mounted into every pod that mounts its ServiceAccount token.
SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def bot_namespace(settings: Settings, sa_file: Path = SA_NAMESPACE_FILE) -> str | None:
    """The namespace the bot runs in: ``ACCESSBOT_NAMESPACE``, else the pod's
    ServiceAccount namespace file, else None (not in a cluster).

    Raises ``ConfigError`` when ``ACCESSBOT_NAMESPACE`` is not a namespace name.
    """
    value = (settings.accessbot_namespace or "").strip()
    if value:  # empty counts as unset, as for a variable set to nothing
        if not is_dns_label(value):
            raise ConfigError(
                f"ACCESSBOT_NAMESPACE: {value!r} is not a namespace name "
                f"({DNS_LABEL_RULE} characters)"
            )
        return value
    try:
        value = sa_file.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return value if is_dns_label(value) else None


def load_settings() -> Settings:
    """Settings from the environment; raises ``ConfigError`` naming the first bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]).upper() if first["loc"] else "environment"
        raise ConfigError(f"{name}: {first['msg']}") from None
