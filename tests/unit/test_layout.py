"""The shape the code keeps (issue 13): adapters reach I/O only through use cases,
``k8s`` knows nothing above it, the domain rules do no I/O, and every module of
``bot`` and ``k8s`` holds one concept (none over 400 lines)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 400
# Domain rules: plain, synchronous, I/O-free.
PURE = ("bot/agenda.py", "bot/lifecycle.py", "bot/policy.py", "bot/policy_schema.py",
        "bot/policy_requests.py", "bot/durations.py", "bot/nudge_rules.py",
        "bot/policy_protected.py", "bot/policy_rules.py", "bot/policy_breakglass.py",
        "bot/policy_checks.py",
        "bot/extension_rules.py", "bot/narrowing.py", "bot/start_times.py")  # fmt: skip
IO_LIBRARIES = (
    "redis", "aiohttp", "kubernetes", "slack_sdk", "slack_bolt", "asyncio", "k8s.clients",
)  # fmt: skip


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _under(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def _modules(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def test_the_slack_adapter_reaches_store_scheduler_and_clusters_only_through_use_cases() -> None:
    found = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in _modules("bot/slack")
        for name in _imports(path)
        if _under(name, ("bot.store", "bot.scheduler", "k8s"))
    }
    assert not found


def test_k8s_knows_nothing_of_the_bot_slack_or_redis() -> None:
    found = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in _modules("k8s")
        for name in _imports(path)
        if _under(name, ("bot", "redis", "slack_sdk", "slack_bolt"))
    }
    assert not found


@pytest.mark.parametrize("module", PURE)
def test_domain_rules_do_no_io(module: str) -> None:
    assert not {n for n in _imports(ROOT / module) if _under(n, IO_LIBRARIES)}


def test_no_module_of_bot_or_k8s_over_400_lines() -> None:
    long = {
        f"{path.relative_to(ROOT)} ({n})"
        for path in _modules("bot", "k8s")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long
