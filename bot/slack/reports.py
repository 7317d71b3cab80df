"""``/k8s nodes``, ``/k8s helm`` and ``/k8s standing``: run the cluster report, shape it for chat.

``/k8s standing`` is for admins only, whatever ``ReportAccess`` says: it maps
who holds standing privilege, which is what an attacker would look for first.
The caller checks that with the workflow (``Workflow.require_admin``).

Who may run them: by default any workspace member. Node and release status is
operational information, not a secret (no object contents, no credentials), and
the people who need it most are the ones paging through an incident without
access yet. ``ReportAccess = "approvers"`` restricts them to admins and role
approvers for workspaces that disagree; the policy file has no key for this
yet, so the choice is made where the app is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from bot.policy import Policy, approvers_of, is_admin
from bot.slack.blocks import (
    Message,
    report_file_content,
    report_file_message,
    report_messages,
    standing_message,
    with_file_note,
)
from bot.slack.commands import Helm, Nodes, Standing
from k8s.clients import ClusterClient
from k8s.helm import helm_report
from k8s.nodes import nodes_report
from k8s.standing import CERTIFICATE_NOTE, standing_report
from k8s.table import Problem, group_problems, names_hidden

__all__ = ["ReportAccess", "ReportOutput", "may_run_reports", "run_report", "run_standing"]

ReportAccess = Literal["everyone", "approvers"]


def may_run_reports(
    policy: Policy, access: ReportAccess, user: str, groups: frozenset[str]
) -> bool:
    """Whether ``user`` (in ``groups``) may run the /k8s reports."""
    if access == "everyone":
        return True
    if is_admin(policy, user, groups):
        return True
    for role in policy.roles:
        users, handles = approvers_of(policy, role, include_admins=False)
        if user in users or not handles.isdisjoint(groups):
            return True
    return False


@dataclass(frozen=True)
class ReportOutput:
    """Messages to post, or a summary plus a file when the table is too long."""

    messages: Sequence[Message]
    file_name: str | None = None
    file_content: str | None = None


def _shape(
    title: str,
    problems: Sequence[Problem],
    noun: tuple[str, str],
    table: str,
    empty: str,
    file_name: str,
) -> ReportOutput:
    """Chat messages when everything fits whole; else a summary plus the full file.

    The chat shows identical problems grouped ("160 nodes: NotReady ..."); the
    file, sent whenever anything was left out of the chat, lists every problem
    on its own line and then the table exactly as kubectl/helm print it.
    """
    summary = group_problems(problems, noun)
    content = report_file_content(title, [p.line for p in problems], table)
    messages = report_messages(title, summary, table, empty, count=len(problems))
    if messages is None:
        message = report_file_message(title, summary, file_name, count=len(problems))
        return ReportOutput([message], file_name, content)
    if names_hidden(problems):
        # "and 157 more": those names are in the file, one problem per line.
        return ReportOutput(with_file_note(messages, file_name, len(problems)), file_name, content)
    return ReportOutput(messages)


async def run_report(command: Nodes | Helm, cluster: ClusterClient) -> ReportOutput:
    """Fetch one cluster's report (slow: apiserver calls) and shape it.

    Raises :class:`k8s.errors.ClusterError` (``InvalidNamespace`` included).
    """
    if isinstance(command, Nodes):
        nodes = await nodes_report(cluster)
        title = f"Nodes on {cluster.name}: {nodes.ready} of {nodes.total} ready"
        return _shape(
            title,
            nodes.problem_list,
            ("node", "nodes"),
            nodes.render_table(),
            "No nodes.",
            f"nodes-{cluster.name}.txt",
        )
    releases = await helm_report(cluster, command.namespace)
    where = f"namespace {command.namespace}" if command.namespace else "all namespaces"
    title = f"Helm releases on {cluster.name}, {where}: {len(releases.rows)}"
    return _shape(
        title,
        releases.problem_list,
        ("release", "releases"),
        releases.render_table() if releases.rows else "",
        "No releases.",
        f"helm-{cluster.name}.txt",
    )


async def run_standing(command: Standing, cluster: ClusterClient) -> ReportOutput:
    """``/k8s standing`` for one cluster: counts, the entries that fit, the note.

    The file (the same text ``accessbot standing`` prints) is sent whenever the
    chat leaves anything out: entry lines that do not fit, or the bindings
    built into Kubernetes, which the chat only counts.
    Raises :class:`k8s.errors.ClusterError`.
    """
    del command  # one cluster per call; the caller resolved -c
    report = await standing_report(cluster)
    lines = [e.line for e in report.entries]
    notes = [f"Not checked: {gap}" for gap in report.gaps] + [CERTIFICATE_NOTE]
    message, whole = standing_message(report.title, report.counts(), lines, notes, None)
    if whole and not report.builtin:
        return ReportOutput([message])
    file_name = f"standing-{cluster.name}.txt"
    message, _ = standing_message(report.title, report.counts(), lines, notes, file_name)
    return ReportOutput([message], file_name, report.render_text())
