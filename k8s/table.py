"""Column-aligned text tables laid out byte-for-byte like kubectl and helm print them.

Users compare what the bot posts with what their terminal shows, so the two
layouts are reproduced exactly rather than approximated:

* kubectl (``k8s.io/cli-runtime/pkg/printers``) writes tab-separated cells
  through a tabwriter with minwidth 6 and padding 3: every column but the last
  is as wide as its widest cell plus 3 spaces, at least 6; the last column is
  not padded, so lines carry no trailing blanks. No rows means no output at all
  (kubectl then says "No resources found" on stderr).
* helm (``github.com/gosuri/uitable`` with its default ``"\\t"`` separator)
  pads *every* cell, the last one included, to its column's widest cell and
  joins the cells with a single tab; the table ends with a newline.

Widths are counted in characters, which equals both tools' measure for the
ASCII names, versions and timestamps these tables hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

KUBECTL_MIN_WIDTH = 6
KUBECTL_PADDING = 3
HELM_SEPARATOR = "\t"

# kubectl cuts a cell at the first character tabwriter would treat as a line
# break and marks the cut with "...", so one object never spans two lines.
_KUBECTL_BREAKS = ("\n", "\r", "\f")


def kubectl_cell(value: str) -> str:
    """A cell as kubectl prints it: cut at the first line break, marked with '...'."""
    cut = min((i for i in (value.find(c) for c in _KUBECTL_BREAKS) if i >= 0), default=-1)
    return value if cut < 0 else value[:cut] + "..."


def kubectl_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Render like ``kubectl get``; an empty string when there are no rows."""
    body = [[kubectl_cell(cell) for cell in row] for row in rows]
    if not body:
        return ""
    lines = [list(header), *body]
    widths = [
        max(KUBECTL_MIN_WIDTH, max(len(line[i]) for line in lines) + KUBECTL_PADDING)
        for i in range(len(header) - 1)
    ]
    out = []
    for line in lines:
        padded = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        out.append("".join(padded) + line[-1])
    return "\n".join(out) + "\n"


def helm_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Render like ``helm ls``: every cell padded, tab-joined, trailing newline."""
    lines = [list(header), *(list(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = [
        HELM_SEPARATOR.join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in lines
    ]
    return "\n".join(out) + "\n"
