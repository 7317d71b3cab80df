"""The cluster reports in chat (``/k8s nodes``, ``/k8s helm``, ``/k8s standing``).

The rule: every problem reaches the user. The chat message shows the
(grouped) problems and the table as long as they fit whole; a block's text
is only ever split at a line end. When anything does not fit, or would have
to be altered for Slack, the message says so and the file in the DM holds
the full problem list and the exact table.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bot.slack.blocks.kit import Message, context, header, section
from bot.slack.text import JSON, SECTION_TEXT_LIMIT, code, escape, md, plain
from bot.usecases.reports import HelmResult, NodesResult, ProblemList, StandingResult

# Slack shows long code blocks collapsed anyway; past this many messages a
# table is easier to read as a file.
REPORT_SECTIONS_PER_MESSAGE = 5
REPORT_MAX_MESSAGES = 3
# Sections of problem lines in the first message (3,000 characters each).
REPORT_PROBLEM_SECTIONS = 5
_FENCE = "```"
_BULLET = "• "
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _pack(lines: Sequence[str], room: int) -> list[list[int]]:
    """Indexes of ``lines`` grouped so each group, newline-joined, fits in ``room`` characters.

    Lines are never split: packing stops before the first line longer than
    ``room`` on its own (the caller decides what then).
    """
    groups: list[list[int]] = []
    size = 0
    for i, line in enumerate(lines):
        if len(line) > room:
            break
        if groups and size + 1 + len(line) <= room:
            groups[-1].append(i)
            size += 1 + len(line)
        else:
            groups.append([i])
            size = len(line)
    return groups


def table_chunks(table: str, limit: int = SECTION_TEXT_LIMIT) -> list[str] | None:
    """The table as code-block texts of at most ``limit`` characters, split at line ends.

    None when the table cannot be shown unchanged that way: a line longer than
    a block, a fence (three backticks) that would end the code block, or a
    control character (kubectl passes BEL, NUL, C1...; helm passes even ESC),
    which Slack would drop, show oddly or refuse. The file carries it exactly.
    """
    if _FENCE in table or _CONTROL.search(table):
        return None
    room = limit - 2 * len(_FENCE) - 2
    lines = [escape(raw) for raw in table.rstrip("\n").split("\n")]
    groups = _pack(lines, room)
    if sum(len(g) for g in groups) < len(lines):
        return None
    return [f"{_FENCE}\n" + "\n".join(lines[i] for i in g) + f"\n{_FENCE}" for g in groups]


def _problem_blocks(problems: Sequence[str], count: int, sections: int) -> tuple[list[JSON], int]:
    """Blocks for the problem lines (at most ``sections`` of them), and how many lines they hold."""
    if not problems:
        return [section(md(":white_check_mark: No problems found."))], 0
    blocks = [section(md(f":warning: *{count} problem(s)*"))]
    # Sized by their escaped length, which is what Slack counts.
    groups = _pack([escape(_BULLET + p) for p in problems], SECTION_TEXT_LIMIT)[:sections]
    for group in groups:
        # plain_text: problem lines quote cluster data (node conditions, release notes).
        blocks.append(section(plain("\n".join(_BULLET + problems[i] for i in group))))
    return blocks, sum(len(g) for g in groups)


def report_messages(
    title: str,
    problems: Sequence[str],
    table: str,
    empty: str,
    *,
    count: int | None = None,
) -> list[Message] | None:
    """Problems first, then the table in monospace; None when it needs a file instead.

    ``problems`` are the lines to show (grouped by the caller), ``count`` the
    number of problems they stand for (default: one per line). None when a
    problem line or table line does not fit a block, or there is too much.
    """
    count = len(problems) if count is None else count
    problem_blocks, shown = _problem_blocks(problems, count, REPORT_PROBLEM_SECTIONS)
    if shown < len(problems):
        return None
    first: list[JSON] = [header(title), *problem_blocks]
    if not table.strip():
        return [Message(escape(title), [*first, section(md(escape(empty)))])]
    chunks = table_chunks(table)
    if chunks is None:
        return None
    groups = [
        chunks[i : i + REPORT_SECTIONS_PER_MESSAGE]
        for i in range(0, len(chunks), REPORT_SECTIONS_PER_MESSAGE)
    ]
    if len(groups) > REPORT_MAX_MESSAGES:
        return None
    messages = [Message(escape(title), [*first, *(section(md(c)) for c in groups[0])])]
    for n, group in enumerate(groups[1:], start=2):
        part = f"{title} (part {n} of {len(groups)})"
        messages.append(
            Message(escape(part), [context(plain(part)), *(section(md(c)) for c in group)])
        )
    return messages


def report_file_message(
    title: str, problems: Sequence[str], filename: str, *, count: int | None = None
) -> Message:
    """The summary posted when the report went into a file: what fits, and where the rest is."""
    count = len(problems) if count is None else count
    blocks = [header(title)]
    problem_blocks, shown = _problem_blocks(problems, count, REPORT_PROBLEM_SECTIONS)
    blocks += problem_blocks
    if shown < len(problems):
        blocks.append(
            context(md(f"…and {len(problems) - shown} more problem line(s) in the file."))
        )
    blocks.append(
        section(
            md(
                f"The full problem list and the table are in the file {code(filename)} "
                "in your DM with AccessBot."
            )
        )
    )
    return Message(escape(title), blocks)


def with_file_note(messages: Sequence[Message], filename: str, count: int) -> list[Message]:
    """The messages, the first saying (before its table) that the file has every problem line."""
    first, *rest = messages
    note = context(
        md(f"All {count} problem(s), one line each, are in the file {code(filename)} in your DM.")
    )
    blocks = list(first.blocks)
    at = next(
        (
            i
            for i, b in enumerate(blocks)
            if str(b.get("text", {}).get("text", "")).startswith(_FENCE)
        ),
        len(blocks),
    )
    blocks.insert(at, note)
    return [Message(first.text, blocks), *rest]


def report_file_content(title: str, problems: Sequence[str], table: str) -> str:
    """The file: title, every problem (one line each, none grouped), the exact table."""
    parts = [title, ""]
    if problems:
        parts += [f"{len(problems)} problem(s):", *problems, ""]
    else:
        parts += ["No problems found.", ""]
    return "\n".join(parts) + "\n" + table


# -- /k8s standing ---------------------------------------------------------------------------------


def standing_message(
    title: str,
    counts: Sequence[str],
    lines: Sequence[str],
    notes: Sequence[str],
    filename: str | None,
) -> tuple[Message, bool]:
    """Counts first, then as many whole entry lines as fit, then ``notes``.

    Returns the message and whether every entry line is in it; when not, or
    when ``filename`` is given, the message points at the file in the DM. Lines
    and counts quote names from the cluster, so they go out as plain_text.
    """
    blocks: list[JSON] = [header(title)]
    blocks.append(section(plain("\n".join(counts) if counts else "Nothing found.")))
    groups = _pack([escape(_BULLET + line) for line in lines], SECTION_TEXT_LIMIT)
    groups = groups[:REPORT_PROBLEM_SECTIONS]
    for group in groups:
        blocks.append(section(plain("\n".join(_BULLET + lines[i] for i in group))))
    shown = sum(len(g) for g in groups)
    if shown < len(lines):
        blocks.append(context(md(f"…and {len(lines) - shown} more line(s) in the file.")))
    blocks += [context(plain(note)) for note in notes]
    if filename is not None:
        blocks.append(
            section(md(f"The full list is in the file {code(filename)} in your DM with AccessBot."))
        )
    return Message(escape(title), blocks), shown == len(lines)


# -- one cluster's report, shaped for chat ---------------------------------------------


@dataclass(frozen=True)
class ReportOutput:
    """Messages to post, and the file for the requester's DM when the chat leaves
    anything out (``file_name`` and ``file_content`` both set, or both None)."""

    messages: Sequence[Message]
    file_name: str | None = None
    file_content: str | None = None


def _table_output(
    title: str, problems: ProblemList, table: str, empty: str, file_name: str
) -> ReportOutput:
    """Chat messages when everything fits whole; else a summary plus the full file.

    The chat shows identical problems grouped ("160 nodes: NotReady ..."); the
    file, sent whenever anything was left out of the chat, lists every problem
    on its own line and then the table exactly as kubectl/helm print it.
    """
    count = len(problems.lines)
    summary = problems.grouped
    content = report_file_content(title, problems.lines, table)
    messages = report_messages(title, summary, table, empty, count=count)
    if messages is None:
        message = report_file_message(title, summary, file_name, count=count)
        return ReportOutput([message], file_name, content)
    if problems.names_hidden:
        # "and 157 more": those names are in the file, one problem per line.
        return ReportOutput(with_file_note(messages, file_name, count), file_name, content)
    return ReportOutput(messages)


def nodes_output(nodes: NodesResult) -> ReportOutput:
    """``/k8s nodes`` for one cluster."""
    title = f"Nodes on {nodes.cluster}: {nodes.ready} of {nodes.total} ready"
    return _table_output(
        title, nodes.problems, nodes.table, "No nodes.", f"nodes-{nodes.cluster}.txt"
    )


def helm_output(helm: HelmResult) -> ReportOutput:
    """``/k8s helm`` for one cluster."""
    where = f"namespace {helm.namespace}" if helm.namespace else "all namespaces"
    title = f"Helm releases on {helm.cluster}, {where}: {helm.releases}"
    return _table_output(
        title, helm.problems, helm.table, "No releases.", f"helm-{helm.cluster}.txt"
    )


def standing_output(report: StandingResult) -> ReportOutput:
    """``/k8s standing`` for one cluster: counts, the entries that fit, the notes.

    The file (the same text ``accessbot standing`` prints) is sent whenever the
    chat leaves anything out: entry lines that do not fit, or the bindings
    built into Kubernetes, which the chat only counts.
    """
    notes = [f"Not checked: {gap}" for gap in report.gaps] + [report.note]
    message, whole = standing_message(report.title, report.counts, report.lines, notes, None)
    if whole and not report.builtin:
        return ReportOutput([message])
    file_name = f"standing-{report.cluster}.txt"
    message, _ = standing_message(report.title, report.counts, report.lines, notes, file_name)
    return ReportOutput([message], file_name, report.text)
