"""``accessbot standing [-c CLUSTER]``: the /k8s standing report in a terminal."""

from __future__ import annotations

import argparse

from bot.cli.runtime import problem
from bot.core import cluster_targets
from bot.policy import load_policy
from bot.settings import ConfigError, Settings, bot_namespace
from k8s import standing as k8s_standing
from k8s.clients import ClusterRegistry
from k8s.errors import ClusterError


async def standing(settings: Settings, args: argparse.Namespace) -> int:
    """Print the /k8s standing report of one policy cluster (or each): the same text
    as the file Slack sends. Needs no Redis: it only reads the clusters."""
    policy = load_policy(settings.accessbot_policy, bot_namespace=bot_namespace(settings))
    names = [args.cluster] if args.cluster else list(policy.clusters)
    unknown = [n for n in names if n not in policy.clusters]
    if unknown:
        known = ", ".join(policy.clusters) or "none"
        raise ConfigError(f"unknown cluster {unknown[0]!r}; clusters in the policy: {known}")
    try:
        targets = cluster_targets(policy, settings.kubeconfig)
        registry = ClusterRegistry({n: targets[n] for n in names})
    except Exception as exc:  # a bad kubeconfig or unknown context, as `check` says it
        raise ConfigError(f"kubeconfig: {exc}") from exc
    code = 0
    try:
        for n, name in enumerate(names):
            try:
                report = await k8s_standing.standing_report(registry[name])
            except ClusterError as exc:
                code = problem(str(exc))
                continue
            print(("\n" if n else "") + report.render_text(), end="")
    finally:
        registry.close()
    return code
