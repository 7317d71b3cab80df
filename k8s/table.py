"""Text tables laid out byte for byte like ``kubectl get`` and ``helm ls`` print them.

Users compare what the bot posts with what their terminal shows, and cells carry
data anyone with write access to a Node or a Secret controls, so both tools'
table writers are ported rather than approximated, hostile cells included.

kubectl 1.37 (``k8s.io/cli-runtime/pkg/printers`` ``printTable`` and
``appendCellValue``, ``terminal.go``; ``github.com/liggitt/tabwriter``):

* a cell is cut at its first ``\\f``, ``\\n`` or ``\\r`` and marked ``...``;
  ESC is written as ``^[`` (``\\r`` as ``\\r``, though a cut already removed
  it). Every other character, BEL, DEL and C1 controls included, is written
  as it is;
* before the rows, the header is padded with spaces to each column's widest
  cell counted in *bytes* (UTF-8, before escaping and cutting);
* the tabwriter (minwidth 6, padding 3, ``RememberWidths``) then measures
  cells in *runes*, splits cells at ``\\t`` and ``\\v`` wherever they occur
  (also inside a value), pads every cell but the last of its line, and is
  flushed every 100 rows; a column never narrows after a flush;
* ``kubectl get`` reads lists in chunks of 500: each chunk is its own table,
  printed without a header after the first, its first row padded like the
  header instead.

helm 3.22 (``github.com/gosuri/uitable`` v0.0.4, widths from
:mod:`k8s.runewidth`): cells are never escaped; a cell's width is its widest
line with ANSI escape sequences removed; every cell is padded (or cut with
``...``) to its column's width, cells are joined by a tab, and a cell with
line breaks spreads its row over several lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from k8s.runewidth import east_asian_locale, rune_width, string_width

KUBECTL_MIN_WIDTH = 6
KUBECTL_PADDING = 3
KUBECTL_FLUSH_ROWS = 100  # printers.flushInterval
KUBECTL_CHUNK_ROWS = 500  # kubectl get --chunk-size default
HELM_SEPARATOR = "\t"

_KUBECTL_SPECIAL = re.compile(r"[\f\n\r\x1b]")
_KUBECTL_BREAK = re.compile(r"[\f\n\r]")
# What the tabwriter ends a cell at; \n and \f never survive kubectl_cell.
_TABWRITER_CELL_END = re.compile(r"[\t\v]")


def kubectl_cell(value: str) -> str:
    """A cell's text as kubectl writes it: cut at a line break ('...'), ESC as '^['."""
    if _KUBECTL_SPECIAL.search(value) is None:
        return value
    cut = _KUBECTL_BREAK.search(value)
    text = value if cut is None else value[: cut.start()]
    text = text.replace("\x1b", "^[").replace("\r", "\\r")
    return text if cut is None else text + "..."


def _byte_len(value: str) -> int:
    return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))


class _TabWriter:
    """``github.com/liggitt/tabwriter`` as kubectl configures it (space padding).

    Cells are kept as (text, width in runes); a Python ``str`` of valid UTF-8
    has exactly Go's rune count as its length. Escape (0xff) sequences cannot
    occur in UTF-8 text, and kubectl sets no HTML filtering.
    """

    def __init__(self, min_width: int, padding: int) -> None:
        self.min_width = min_width
        self.padding = padding
        self.lines: list[list[str]] = []
        self.widths: list[int] = []
        self.max_widths: list[int] = []  # RememberWidths
        self.out: list[str] = []

    def write_line(self, text: str) -> None:
        """One line as written: cells end at tabs and vertical tabs; no newline inside."""
        cells = _TABWRITER_CELL_END.split(text)
        self.lines.append(cells)
        if len(cells) == 1:
            # A line of one cell ends a block: Write flushes right there.
            self.flush()

    def flush(self) -> None:
        self._format(0, len(self.lines))
        self.lines = []
        self.widths = []

    def _write_lines(self, line0: int, line1: int) -> None:
        widths = self.widths
        for i in range(line0, line1):
            parts: list[str] = []
            for j, text in enumerate(self.lines[i]):
                parts.append(text)
                if j < len(widths):
                    parts.append(" " * (widths[j] - len(text)))
            parts.append("\n")
            self.out.append("".join(parts))

    def _format(self, line0: int, line1: int) -> None:
        column = len(self.widths)
        this = line0
        while this < line1:
            if column >= len(self.lines[this]) - 1:
                this += 1
                continue
            self._write_lines(line0, this)
            line0 = this
            width = self.min_width
            while this < line1:
                line = self.lines[this]
                if column >= len(line) - 1:
                    break
                width = max(width, len(line[column]) + self.padding)
                this += 1
            if len(self.max_widths) < column:
                self.max_widths.extend(self.widths[len(self.max_widths) :])
            if len(self.max_widths) == column:
                self.max_widths.append(width)
            elif self.max_widths[column] > width:
                width = self.max_widths[column]
            else:
                self.max_widths[column] = width
            self.widths.append(width)
            self._format(line0, this)
            self.widths.pop()
            line0 = this
            this += 1  # Go's loop increment after the block
        self._write_lines(line0, line1)


def kubectl_table(
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    chunk_rows: int = KUBECTL_CHUNK_ROWS,
) -> str:
    """Render like ``kubectl get``; an empty string when there are no rows.

    ``header`` is the printed (upper-case, ASCII) column names; ``rows`` are the
    cells as the apiserver's table printer computes them, unescaped.
    """
    all_rows = [list(row) for row in rows]
    if not all_rows:
        return ""
    last = len(header) - 1
    writer = _TabWriter(KUBECTL_MIN_WIDTH, KUBECTL_PADDING)
    for start in range(0, len(all_rows), chunk_rows):
        chunk = all_rows[start : start + chunk_rows]
        widest = [max(_byte_len(row[i]) for row in chunk) for i in range(len(header))]
        if start == 0:
            writer.write_line(
                "\t".join(
                    name if i == last else name + " " * (widest[i] - len(name))
                    for i, name in enumerate(header)
                )
            )
        for n, row in enumerate(chunk):
            cells = [kubectl_cell(cell) for cell in row]
            if start > 0 and n == 0:
                # No header after the first chunk: its first row sets the widths.
                cells = [
                    cell if i == last else cell + " " * (widest[i] - _byte_len(row[i]))
                    for i, cell in enumerate(cells)
                ]
            writer.write_line("\t".join(cells))
            if (n + 1) % KUBECTL_FLUSH_ROWS == 0:
                writer.flush()
    writer.flush()
    return "".join(writer.out)


# -- helm ------------------------------------------------------------------------------

# uitable's strutil.Strip: ANSI sequences take no width (Go RE2 syntax, \d ASCII).
_ANSI = re.compile(
    "[\x1b\x9b][\\[\\]()#;?]*(?:(?:(?:[a-zA-Z0-9]*(?:;[a-zA-Z0-9]*)*)?\x07)"
    "|(?:(?:[0-9]{1,4}(?:;[0-9]{0,4})*)?[0-9A-PRZcf-ntqry=><~]))"
)


@dataclass(frozen=True)
class _Measure:
    east_asian: bool

    def width(self, text: str) -> int:
        """``strutil.StringWidth``: runewidth of the text without ANSI sequences."""
        if text.isascii() and text.isprintable():
            return len(text)
        return string_width(_ANSI.sub("", text), east_asian=self.east_asian)

    def pad_right(self, text: str, length: int) -> str:
        width = self.width(text)
        return text if width >= length else text + " " * (length - width)

    def resize(self, text: str, length: int) -> str:
        """``strutil.Resize`` (left-aligned): pad to ``length``, or cut and add '...'."""
        width = self.width(text)
        if width == length:
            return text
        padded = self.pad_right(text, length)
        if width <= length:
            return padded
        kept: list[str] = []
        used = 0
        for char in padded:
            kept.append(char)
            char_width = rune_width(char, east_asian=self.east_asian)
            if used + char_width >= length - 3:
                break
            used += char_width
        return "".join(kept) + "..."

    def cell(self, data: str | None, length: int) -> str:
        """``Cell.String`` with its width set (the second pass of ``Table.String``)."""
        if data is None:
            return self.pad_left(" ", length)
        return self.resize(data, length) if length > 0 else data

    def pad_left(self, text: str, length: int) -> str:
        width = self.width(text)
        return text if width >= length else " " * (length - width) + text


def helm_table(
    header: Sequence[str], rows: Iterable[Sequence[str]], *, east_asian: bool | None = None
) -> str:
    """Render like ``helm ls``: every cell padded, tab-joined, trailing newline.

    ``east_asian`` is go-runewidth's locale switch; None reads it from the
    environment the way helm does (see :func:`k8s.runewidth.east_asian_locale`).
    """
    measure = _Measure(east_asian_locale() if east_asian is None else east_asian)
    lines = [list(header), *(list(row) for row in rows)]
    widths = [0] * len(header)
    for line in lines:
        for i, text in enumerate(line):
            if text.isascii() and text.isprintable():
                cell_width = len(text)
            else:
                cell_width = max(measure.width(part) for part in text.split("\n"))
            widths[i] = max(widths[i], cell_width)
    out: list[str] = []
    for line in lines:
        if all(text.isascii() and text.isprintable() for text in line):
            out.append(
                HELM_SEPARATOR.join(
                    text.ljust(width) for text, width in zip(line, widths, strict=True)
                )
            )
            continue
        # The general case: a cell holding line breaks spreads over several lines.
        split = [measure.cell(text, widths[i]).split("\n") for i, text in enumerate(line)]
        for x in range(max(len(parts) for parts in split)):
            out.append(
                HELM_SEPARATOR.join(
                    measure.cell(parts[x] if x < len(parts) else None, widths[y])
                    for y, parts in enumerate(split)
                )
            )
    return "\n".join(out) + "\n"


# -- problems ----------------------------------------------------------------------------

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escaped(match: re.Match[str]) -> str:
    char = match[0]
    if char == "\x1b":
        return "^["  # as kubectl writes ESC
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def safe_line(text: str) -> str:
    """Text quoted from the cluster made one inert line: controls, line and bidi marks escaped.

    Problem lines quote node conditions and release descriptions, which anyone
    able to write those objects controls. They are not table cells (those are
    printed exactly as kubectl and helm print them), so they can be made safe:
    ESC as kubectl writes it (``^[``), every other C0/C1 control, DEL, line and
    paragraph separators and bidi overrides as ``\\xNN``/``\\uNNNN``. A line
    never breaks inside a problem, so splitting at line ends is splitting
    between problems.
    """
    return _UNSAFE.sub(_escaped, text)


@dataclass(frozen=True)
class Problem:
    """One problem of one object: ``subject`` (node, ns/release) and what is wrong."""

    subject: str
    detail: str

    @property
    def line(self) -> str:
        return safe_line(f"{self.subject}: {self.detail}")


NAMES_SHOWN = 3


def names_hidden(problems: Iterable[Problem], *, names_shown: int = NAMES_SHOWN) -> bool:
    """Whether grouping leaves some subjects unnamed (a group larger than ``names_shown``)."""
    counts: dict[str, int] = {}
    for problem in problems:
        counts[problem.detail] = counts.get(problem.detail, 0) + 1
    return any(n > names_shown for n in counts.values())


def group_problems(
    problems: Iterable[Problem], noun: tuple[str, str], *, names_shown: int = NAMES_SHOWN
) -> list[str]:
    """Identical problems as one line each, in order of first appearance.

    ``noun`` is (singular, plural): ``("node", "nodes")``. A problem of one
    object reads as its own line; several read
    ``"160 nodes: NotReady (...): a, b, c and 157 more"``.
    """
    groups: dict[str, list[str]] = {}
    for problem in problems:
        groups.setdefault(problem.detail, []).append(problem.subject)
    lines = []
    for detail, subjects in groups.items():
        if len(subjects) == 1:
            lines.append(safe_line(f"{subjects[0]}: {detail}"))
            continue
        shown = ", ".join(subjects[:names_shown])
        more = len(subjects) - names_shown
        names = f"{shown} and {more} more" if more > 0 else shown
        lines.append(safe_line(f"{len(subjects)} {noun[1]}: {detail}: {names}"))
    return lines
