"""The root Typer app and its command groups; command modules register on these."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

import typer
from typer.core import TyperGroup

from digitlab.errors import DigitlabError


class _ReportingGroup(TyperGroup):
    """Turns a `DigitlabError` or an `OSError` from any command into one line on stderr and
    exit code 1.

    An `OSError` (a read-only folder, a file where a folder should be, a full disk) is the
    user's to fix, like a `DigitlabError`, so it gets the same one line, naming the path.
    """

    def invoke(self, ctx: Any) -> Any:  # click.Context, from the Click that Typer bundles
        try:
            return super().invoke(ctx)
        except DigitlabError as error:
            # Typer bundles its own Click, so a ClickException from `click` would not be caught.
            typer.echo(f"Error: {error}", err=True)
            raise typer.Exit(1) from None
        except OSError as error:
            typer.echo(f"Error: {os_error_line(error)}", err=True)
            raise typer.Exit(1) from None


def os_error_line(error: OSError) -> str:
    """`<path>: <reason>` for an `OSError`, or the reason alone when it names no path.

    Of two paths (a rename's source and destination), the destination is named: digitlab
    renames only files it has just written, so the destination is where the problem lies.
    """
    path = error.filename2 if error.filename2 is not None else error.filename
    reason = error.strerror or str(error)
    if isinstance(path, str | bytes | os.PathLike):
        return f"{os.fsdecode(path)}: {reason}"
    return reason


app = typer.Typer(
    cls=_ReportingGroup,
    name="digitlab",
    help="Handwritten-digit classification: data, exploration, training, evaluation, serving.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

data_app = typer.Typer(
    help="Get, export, scan and split datasets.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null while TensorFlow starts and loads a model.

    TensorFlow 2.21 logs start-up notes from C++ to stderr ("oneDNN custom operations are
    on", absl's "All log messages before...") that TF_CPP_MIN_LOG_LEVEL no longer silences;
    they would sit among a verb's own output. Failures still arrive as exceptions, reported
    after stderr is restored.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_keras_quietly() -> None:
    """Import Keras (and its backend) now, without the backend's native start-up notes."""
    with native_stderr_silenced():
        import keras  # noqa: F401
