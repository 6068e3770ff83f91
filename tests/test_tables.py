"""Text and Markdown tables: cells as written, columns aligned, never colour or wrapping."""

from __future__ import annotations

from digitlab.tables import markdown_table, text_table


def test_markdown_table_aligns_columns_and_marks_right_aligned_ones():
    lines = markdown_table(
        ["run", "parameters"], [["a", "7,850"], ["longer", "12"]], right={1}
    ).splitlines()

    assert lines == [
        "| run    | parameters |",
        "|--------|-----------:|",
        "| a      |      7,850 |",
        "| longer |         12 |",
    ]


def test_markdown_table_escapes_bars_and_keeps_markup_literal():
    text = markdown_table(["what", "why"], [["[bold]x[/bold]", "a|b"], [":smile:", 3]])

    rows = [line.split(" | ") for line in text.splitlines()[2:]]
    assert [cell.strip("| ") for row in rows for cell in row] == [
        "[bold]x[/bold]",
        "a\\|b",
        ":smile:",
        "3",
    ]


def test_text_table_separates_columns_by_two_spaces_without_trailing_ones():
    text = text_table(
        [["one.png", "7", "0.9000"], ["a/much/longer.png", "12", "1.0000"]],
        headers=["path", "digit", "confidence"],
        right={1},
    )

    assert text.splitlines() == [
        "path               digit  confidence",
        "one.png                7  0.9000",
        "a/much/longer.png     12  1.0000",
    ]


def test_text_table_without_headers_keeps_every_row():
    assert text_table([["x", ""], ["", "y"]]).splitlines() == ["x", "   y"]
    assert text_table([]) == ""


def test_tables_ignore_a_narrow_terminal_and_forced_colour(monkeypatch):
    monkeypatch.setenv("COLUMNS", "10")
    monkeypatch.setenv("FORCE_COLOR", "1")
    long_cell = "a cell far wider than ten columns"

    text = text_table([[long_cell, "1"]], headers=["name", "n"])
    markdown = markdown_table(["name", "n"], [[long_cell, "1"]])

    assert text.splitlines()[1] == f"{long_cell}  1"
    assert markdown.splitlines()[2] == f"| {long_cell} | 1 |"
    assert "\x1b" not in text + markdown
