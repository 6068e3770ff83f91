"""Running the real CLI in-process, and the error contract every verb keeps."""

from __future__ import annotations

from typer.testing import CliRunner

from digitlab.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def assert_one_line_error(result, *fragments: str) -> None:
    """Exit code 1, a single `Error: ...` line on stderr naming `fragments`, no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
