"""Rows of cells as text tables: Markdown for reports, aligned plain columns for a terminal.

Every table digitlab prints or writes is laid out here by rich, so columns line up the same
way everywhere (by display width, so wide characters count double). Cells are shown as
written: no markup, no colour, no wrapping or cutting, whatever the terminal's width.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Sequence

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

_RENDER_WIDTH = 1 << 16
"""Wider than any table digitlab makes, so rich never wraps or cuts a cell."""


def markdown_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], right: Collection[int] = ()
) -> str:
    """A Markdown table, aligned so that it also reads as plain text; no trailing newline.

    `right` holds the indices of the columns to align right (numbers, as a reader scans
    them); the others align left. A `|` in a cell is escaped so it cannot split the cell.
    """
    table = Table(box=box.MARKDOWN, show_header=True)
    cells = [[_escape(cell) for cell in row] for row in rows]
    _fill(table, [_escape(header) for header in headers], cells, right)
    header, rule, *body = _render(table)
    # rich's Markdown rule carries no alignment; a colon at a column's right end asks for it.
    marks = rule.split("|")
    for index in right:
        marks[index + 1] = marks[index + 1][:-1] + ":"
    return "\n".join([header, "|".join(marks), *body])


def text_table(
    rows: Sequence[Sequence[object]],
    headers: Sequence[str] | None = None,
    right: Collection[int] = (),
) -> str:
    """Plain columns two spaces apart, with an optional header line; no trailing newline.

    `right` holds the indices of the columns to align right. No line ends in spaces.
    """
    table = Table(box=None, show_header=headers is not None, pad_edge=False, padding=(0, 1))
    width = len(headers) if headers is not None else max((len(row) for row in rows), default=0)
    cells = [[str(cell) for cell in row] for row in rows]
    _fill(table, list(headers or [""] * width), cells, right)
    return "\n".join(_render(table))


def _escape(cell: object) -> str:
    return str(cell).replace("|", "\\|")


def _fill(
    table: Table, headers: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[int]
) -> None:
    """Add the columns and rows, every cell as literal text (rich would parse a str as markup)."""
    for index, header in enumerate(headers):
        table.add_column(Text(header), justify="right" if index in right else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))


def _render(table: Table) -> list[str]:
    """The table's lines as plain text, without the blank lines rich puts around a box."""
    output = io.StringIO()
    console = Console(
        file=output,
        width=_RENDER_WIDTH,
        color_system=None,
        force_terminal=False,
        force_jupyter=False,
        force_interactive=False,
        highlight=False,
        markup=False,
        emoji=False,
        soft_wrap=False,
    )
    console.print(table)
    text = "\n".join(line.rstrip() for line in output.getvalue().splitlines())
    return text.strip("\n").split("\n")
