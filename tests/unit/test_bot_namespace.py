"""Where the bot runs: ACCESSBOT_NAMESPACE, else the pod's ServiceAccount namespace file."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import ConfigError, Settings, bot_namespace, load_settings


def test_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sa_file = tmp_path / "namespace"
    sa_file.write_text("from-file")
    monkeypatch.setenv("ACCESSBOT_NAMESPACE", "platform-bots")
    assert bot_namespace(load_settings(), sa_file) == "platform-bots"


def test_service_account_file_when_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACCESSBOT_NAMESPACE", raising=False)
    sa_file = tmp_path / "namespace"
    assert bot_namespace(load_settings(), sa_file) is None  # not in a pod
    sa_file.write_text("accessbot\n")
    assert bot_namespace(load_settings(), sa_file) == "accessbot"


@pytest.mark.parametrize("value", ["Kube_System", "-x", "a" * 64, "team a"])
def test_a_bad_value_names_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^ACCESSBOT_NAMESPACE: "):
        bot_namespace(Settings(accessbot_namespace=value), Path("/nonexistent"))


def test_empty_means_unset(tmp_path: Path) -> None:
    sa_file = tmp_path / "namespace"
    sa_file.write_text("accessbot")
    assert bot_namespace(Settings(accessbot_namespace="  "), sa_file) == "accessbot"
