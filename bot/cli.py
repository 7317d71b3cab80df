"""The ``accessbot`` command line: serve, check, and operator escape hatches.

Operator commands use the same workflow code paths as Slack. A configuration
error is one line and exit code 2; ``check`` exits 1 on any problem.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.core import Core, build_core, cluster_targets, redis_client
from bot.errors import NotAllowed, UnknownGrant, UnknownUser
from bot.lifecycle import LIVE, State
from bot.logs import setup_logging
from bot.models import Grant, MessageRef
from bot.policy import Policy, PolicyError, load_policy, role_clusters
from bot.redis_server import RedisProcess, RedisUnavailable
from bot.scheduler import Scheduler
from bot.settings import ConfigError, Settings, bot_namespace, load_settings
from bot.store import AUDIT_MAXLEN, Store
from k8s import grants as k8s_grants
from k8s import rbac, standing
from k8s.clients import TRANSIENT_STATUSES, ClusterClient, ClusterRegistry, status_of
from k8s.errors import ClusterError

EXIT_PROBLEM, EXIT_CONFIG = 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="accessbot", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("serve", help="run the bot (HTTP mode, or Socket Mode with SLACK_APP_TOKEN)")
    sub.add_parser("check", help="validate env and policy, reach Redis and every cluster")
    grants = sub.add_parser("grants", help="list or revoke grants").add_subparsers(
        dest="grants_command", required=True, metavar="ACTION"
    )
    ls = grants.add_parser("list", help="live and pending grants")
    ls.add_argument("--all", action="store_true", help="include ended requests and grants")
    rv = grants.add_parser("revoke", help="revoke one grant now")
    rv.add_argument("grant_id")
    rv.add_argument("--reason", default="revoked by an operator")
    au = sub.add_parser("audit", help="a grant's whole life from the audit stream")
    au.add_argument("grant_id")
    off = sub.add_parser("offboard", help="revoke everything a person holds and block them")
    who = off.add_mutually_exclusive_group(required=True)
    who.add_argument("--email")
    who.add_argument("--slack-user", dest="slack_user")
    off.add_argument("--reason", default="offboarded by an operator")
    st = sub.add_parser(
        "standing", help="privileged access AccessBot did not grant (the /k8s standing report)"
    )
    st.add_argument("-c", "--cluster", help="a policy cluster (default: every cluster)")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        _fail(str(exc), EXIT_CONFIG)
    setup_logging(settings.accessbot_log_format, settings.accessbot_log_level)
    commands: dict[str, Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]] = {
        "serve": _serve,
        "check": _check,
        "grants": _grants,
        "offboard": _offboard,
        "standing": _standing,
        "audit": _audit,
    }
    try:
        code = asyncio.run(commands[args.command](settings, args))
    except (ConfigError, PolicyError, RedisUnavailable) as exc:
        _fail(str(exc), EXIT_CONFIG)
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


def _fail(message: str, code: int) -> None:
    print(f"accessbot: {message}", file=sys.stderr)
    sys.exit(code)


async def _serve(settings: Settings, _: argparse.Namespace) -> int:
    from bot.serve import serve  # Slack and aiohttp app code is only needed here

    await serve(settings)
    return 0


# -- check -----------------------------------------------------------------------
async def _check(settings: Settings, _: argparse.Namespace) -> int:
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
        async with _redis(settings) as url:
            from redis.asyncio import Redis

            r = Redis.from_url(url)
            try:
                await asyncio.wait_for(r.ping(), 3)  # type: ignore[arg-type]
            finally:
                await r.aclose()
        _line("redis", "reachable" if settings.redis_url else "embedded redis-server starts")
        return []
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


# -- operator commands -------------------------------------------------------------
class _QuietNotifier:
    """Used when SLACK_BOT_TOKEN is unset: the CLI still works, nobody is messaged."""

    async def post_card(self, grant: Grant) -> MessageRef | None:
        return None

    async def deliver_kubeconfig(self, grant: Grant, filename: str, content: bytes) -> str:
        raise RuntimeError("cannot deliver a kubeconfig without SLACK_BOT_TOKEN")

    async def grant_changed(self, before: Grant, after: Grant) -> None:
        return None

    async def remind(self, grant: Grant) -> None:
        return None


class _NoDirectory:
    async def groups_of(self, user_id: str) -> frozenset[str]:
        return frozenset()

    async def user_for_email(self, email: str) -> str | None:
        raise ConfigError("looking up an email needs SLACK_BOT_TOKEN (users:read.email)")

    async def handle_of(self, user_id: str) -> str:
        return user_id.lower()

    async def user_exists(self, user_id: str) -> bool:
        return False


def _embedded_redis(settings: Settings) -> RedisProcess:
    return RedisProcess(Path(settings.accessbot_data_dir).resolve()).attach_or_start()


@asynccontextmanager
async def _redis(settings: Settings) -> AsyncIterator[str]:
    if settings.redis_url:
        yield settings.redis_url
        return
    process = await asyncio.to_thread(_embedded_redis, settings)
    owned = process.pid is not None
    try:
        yield process.url
    finally:
        if owned:
            process.stop()


@asynccontextmanager
async def _core(settings: Settings) -> AsyncIterator[Core]:
    policy = load_policy(settings.accessbot_policy, bot_namespace=bot_namespace(settings))
    async with _redis(settings) as url:
        notifier: Any = _QuietNotifier()
        directory: Any = _NoDirectory()
        if settings.slack_bot_token is not None:
            from bot.slack import SlackDirectory, SlackNotifier, make_slack_client

            client = make_slack_client(
                settings.slack_bot_token.get_secret_value(), settings.slack_api_url
            )
            notifier, directory = SlackNotifier(client, policy), SlackDirectory(client)
        core = await build_core(
            policy, url, notifier=notifier, directory=directory, kubeconfig=settings.kubeconfig
        )
        try:
            yield core
        finally:
            await core.close()


def _operator() -> str:
    return f"cli:{getpass.getuser()}"


async def _grants(settings: Settings, args: argparse.Namespace) -> int:
    async with _core(settings) as core:
        if args.grants_command == "list":
            states = tuple(State) if args.all else (State.PENDING, *LIVE)
            _print_grants(await core.store.by_state(*states))
            return 0
        try:
            revocation = await core.workflow.revoke(
                args.grant_id, _operator(), args.reason, operator=True
            )
        except (UnknownGrant, NotAllowed) as exc:
            print(f"accessbot: {exc}", file=sys.stderr)
            return EXIT_PROBLEM
        grant = revocation.grant
        print(f"{grant.id}: {grant.state}")
        receipt = (await core.workflow.get(grant.id)).receipt
        if receipt is not None:
            result = "verified" if receipt.verified else "NOT verified (cleanup keeps at it)"
            print(f"access gone: {result} at {_stamp(receipt.at.isoformat())}")
        return 0


def _print_grants(grants: list[Grant]) -> None:
    header = ("ID", "STATE", "REQUESTER", "ROLE", "CLUSTER", "NAMESPACE", "EXPIRES")
    rows = [header] + [
        (
            g.id, str(g.state), g.requester, g.role, g.cluster, g.namespace or "-",
            g.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if g.expires_at else "-",
        )
        for g in grants
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    if not grants:
        print("(none)")


# How each audit event reads in `accessbot audit` (anything else prints as recorded).
_EVENT_LABELS = {
    "active": "delivered",
    "verified": "receipt: verified",
    "verification_failed": "receipt: FAILED",
}


async def _audit(settings: Settings, args: argparse.Namespace) -> int:
    """Print a grant's whole life from the audit stream: requested, each approval,
    delivery, each extension, the end, the receipt. Reads Redis only."""
    async with _redis(settings) as url:
        redis = redis_client(url)
        try:
            entries = await Store(redis, Scheduler(redis)).audit_history(args.grant_id)
        finally:
            await redis.aclose()
    if not entries:
        print(
            f"accessbot: no audit history for {args.grant_id!r}: no such grant was ever "
            "recorded, or its history is gone (the stream keeps only the newest "
            f"~{AUDIT_MAXLEN} entries)",
            file=sys.stderr,
        )
        return EXIT_PROBLEM
    first = entries[0]
    where = f" namespace {first['namespace']}" if first.get("namespace") else ""
    print(f"{args.grant_id}: {first['role']} on {first['cluster']}{where} for {first['requester']}")
    if first.get("event") != "requested":
        print("  (its start is gone from the stream: it keeps only the newest entries)")
    for e in entries:
        event = _EVENT_LABELS.get(e["event"], e["event"])
        if e["kind"] == "extend":
            event = f"extension request {event}"
        print(f"{_stamp(e['at'])}  {event:<24} {e['actor']:<16} {e['reason']}".rstrip())
    return 0


def _stamp(at: str) -> str:
    try:
        return datetime.fromisoformat(at).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return at


async def _offboard(settings: Settings, args: argparse.Namespace) -> int:
    async with _core(settings) as core:
        wf = core.workflow
        try:
            user = await wf.resolve_user(email=args.email, user_id=args.slack_user)
        except UnknownUser as exc:
            print(f"accessbot: {exc}", file=sys.stderr)
            return EXIT_PROBLEM
        live = [g for g in await core.store.by_user(user) if g.live]
        clusters = sorted({g.cluster for g in live})
        print(f"offboarding {user}: {len(live)} live grants on {', '.join(clusters) or 'no'} "
              f"cluster(s)", flush=True)  # fmt: skip
        started = datetime.now(UTC)

        def progress(grant: Grant, what: str) -> None:
            print(f"  {grant.cluster}/{grant.id} ({grant.role}): {what}", flush=True)

        result = await wf.offboard(user, _operator(), args.reason, progress=progress)
        if not result.done:
            for p in result.pending:
                print(f"  {p.cluster}/{p.grant}: objects may still exist", file=sys.stderr)
            print(f"accessbot: offboarding {user} is not finished; cleanup jobs keep at it, "
                  "run this again to check", file=sys.stderr)  # fmt: skip
            return EXIT_PROBLEM
        took = (datetime.now(UTC) - started).total_seconds()
        print(f"done in {took:.1f}s: revoked {len(result.revoked)}, "
              f"cancelled {len(result.cancelled)}; {user} is blocked until an admin "
              f"re-enables them")  # fmt: skip
        return 0


# -- standing ----------------------------------------------------------------------
async def _standing(settings: Settings, args: argparse.Namespace) -> int:
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
                report = await standing.standing_report(registry[name])
            except ClusterError as exc:
                print(f"accessbot: {exc}", file=sys.stderr)
                code = EXIT_PROBLEM
                continue
            print(("\n" if n else "") + report.render_text(), end="")
    finally:
        registry.close()
    return code
