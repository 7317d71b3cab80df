"""``accessbot check``: the environment, the policy, Redis, every cluster and the
trust issued kubeconfigs will meet, and the escape paths each catalog role opens.

One line per check (``✓``/``✗``/``⚠``), then the verdict; exit 1 on any problem.
"""

from __future__ import annotations

import argparse
import asyncio

from bot.cli.runtime import EXIT_PROBLEM, redis_url
from bot.core import cluster_targets
from bot.policy import Policy, PolicyError, load_policy, role_clusters
from bot.redis_conn import redis_client, redis_target
from bot.redis_server import RedisUnavailable
from bot.settings import ConfigError, Settings, bot_namespace
from k8s import grants as k8s_grants
from k8s import rbac
from k8s.clients import TRANSIENT_STATUSES, ClusterClient, ClusterRegistry, status_of
from k8s.errors import ClusterError


async def check(settings: Settings, _: argparse.Namespace) -> int:
    """Run every check; `EXIT_PROBLEM` when any found a problem, else 0."""
    problems: list[str] = []
    _line("environment", "ok")
    try:
        settings.require_serve()
    except ConfigError as exc:
        problems.append(str(exc))
        _line("slack settings", str(exc), ok=False)
    try:
        policy = load_policy(settings.accessbot_policy, bot_namespace=bot_namespace(settings))
        _line("policy", f"{settings.accessbot_policy}: {len(policy.roles)} roles, "
              f"{len(policy.clusters)} clusters")  # fmt: skip
    except PolicyError as exc:
        problems.extend(exc.problems)
        for problem in exc.problems:
            _line("policy", problem, ok=False)
        policy = None
    problems += await _check_redis(settings)
    warnings: list[str] = []
    if policy is not None:
        problems += await _check_clusters(settings, policy, warnings)
        problems += await _check_role_risks(settings, policy)
    verdict = "OK" if not problems else f"{len(problems)} problem(s)"
    print(f"\n{verdict}" + (f", {len(warnings)} warning(s)" if warnings else ""))
    return EXIT_PROBLEM if problems else 0


def _line(what: str, detail: str, *, ok: bool = True) -> None:
    print(f"{'✓' if ok else '✗'} {what}: {detail}")


async def _check_redis(settings: Settings) -> list[str]:
    try:
        async with redis_url(settings) as target:
            r = redis_client(target)
            try:
                await asyncio.wait_for(r.ping(), 3)  # type: ignore[arg-type]
            finally:
                await r.aclose()
        if redis_target(settings) is None:
            _line("redis", "embedded redis-server starts")
        else:  # a URL may hold a password: only a Sentinel target is named
            _line("redis", "reachable" if isinstance(target, str) else f"reachable: {target}")
        return []
    except ConfigError as exc:
        _line("redis", str(exc), ok=False)
        return [str(exc)]
    except (OSError, RedisUnavailable, TimeoutError) as exc:
        message = f"redis: {exc or exc.__class__.__name__}"
        _line("redis", str(exc) or exc.__class__.__name__, ok=False)
        return [message]
    except Exception as exc:  # redis-py raises its own ConnectionError family
        _line("redis", str(exc), ok=False)
        return [f"redis: {exc}"]


async def _check_clusters(settings: Settings, policy: Policy, warnings: list[str]) -> list[str]:
    problems: list[str] = []
    try:
        registry = ClusterRegistry(cluster_targets(policy, settings.kubeconfig))
    except Exception as exc:  # a bad kubeconfig or unknown context
        _line("kubeconfig", str(exc), ok=False)
        return [f"kubeconfig: {exc}"]
    try:
        for c in registry:
            try:
                await c.call(c.core.get_api_resources, _request_timeout=(3.0, 5.0))
                _line(f"cluster {c.name}", "reachable with the bot's credentials")
            except ClusterError as exc:
                _line(f"cluster {c.name}", str(exc), ok=False)
                problems.append(str(exc))
                continue
            problems += await _check_issued_trust(c, warnings)
    finally:
        registry.close()
    return problems


async def _check_issued_trust(c: ClusterClient, warnings: list[str]) -> list[str]:
    """What a requester's kubectl will meet: the issued server, with the issued trust."""
    label = f"cluster {c.name} kubeconfigs"
    try:
        await k8s_grants.check_issued_trust(c)
    except ClusterError as exc:
        _line(label, str(exc), ok=False)
        return [str(exc)]
    if c.trust.insecure:
        warning = (
            f"{c.server} is trusted WITHOUT TLS verification "
            "(insecure-skip-tls-verify in the bot's kubeconfig); issued kubeconfigs skip it "
            "too, so a network attacker can take their tokens. Configure the cluster's CA."
        )
        warnings.append(warning)
        print(f"⚠ {label}: {warning}")
    elif c.trust.ca_pem:
        _line(label, f"{c.server} verified with the CA from the bot's kubeconfig")
    else:
        _line(label, f"{c.server} verified with the system's trusted CAs")
    return []


async def _check_role_risks(settings: Settings, policy: Policy) -> list[str]:
    """List, per catalog role and cluster, the escape paths its ClusterRole opens.

    A problem for each role that opens a blocking risk (``k8s.rbac.BLOCKING_RISKS``)
    it does not list in ``accepts_risks``, and for each ClusterRole that does not
    exist. A cluster that cannot be reached was reported by ``_check_clusters``.
    """
    problems: list[str] = []
    try:
        registry = ClusterRegistry(cluster_targets(policy, settings.kubeconfig))
    except Exception:  # reported by _check_clusters already
        return []
    try:
        for c in registry:
            roles = [n for n, r in policy.roles.items() if c.name in role_clusters(policy, n)]
            wanted = sorted({policy.roles[n].cluster_role for n in roles})
            try:
                found = await rbac.cluster_role_rules(c, wanted)
            except ClusterError as exc:
                if status_of(exc) in (0, *TRANSIENT_STATUSES):
                    continue  # unreachable: already one problem for this cluster
                why = f"cluster {c.name}: cannot read ClusterRoles ({exc}); the bot needs " \
                      "get and list on clusterroles to tell what each role allows"  # fmt: skip
                _line(f"role risks on {c.name}", why, ok=False)
                problems.append(why)
                continue
            for name in roles:
                problems += _role_risk_line(
                    policy, name, c.name, found[policy.roles[name].cluster_role]
                )
    finally:
        registry.close()
    return problems


def _role_risk_line(
    policy: Policy, name: str, cluster: str, rules: list[rbac.Rule] | None
) -> list[str]:
    role = policy.roles[name]
    what = f"role {name} on {cluster}"
    if rules is None:
        why = f"{what}: ClusterRole {role.cluster_role} does not exist; every grant would fail"
        _line(what, why.split(": ", 1)[1], ok=False)
        return [why]
    risks = rbac.analyse(rules, namespaced=role.scope == "namespace")
    shown = ", ".join(rbac.ordered(risks)) or "no escape paths"
    unaccepted = rbac.ordered(risks & rbac.BLOCKING_RISKS - set(role.accepts_risks))
    if not unaccepted:
        accepted = [r for r in rbac.ordered(risks) if r in role.accepts_risks]
        note = f" (accepted: {', '.join(accepted)})" if accepted else ""
        _line(what, f"ClusterRole {role.cluster_role}: {shown}{note}")
        return []
    paths = "; ".join(f"{r}: {rbac.RISK_MEANINGS[r]}" for r in unaccepted)
    accept = f"accepts_risks: [{', '.join(unaccepted)}]"
    why = f"{what}: ClusterRole {role.cluster_role} opens {', '.join(unaccepted)} without {accept}"
    _line(what, f"ClusterRole {role.cluster_role}: {shown}", ok=False)
    print(f"    not accepted: {paths}")
    print(f"    fix: bind a narrower ClusterRole, or add {accept} to role {name}")
    return [why]
