"""The root Typer app and its command groups; command modules register on these."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from digitlab.errors import DigitlabError


class _ReportingGroup(TyperGroup):
    """Turns a `DigitlabError` from any command into one line on stderr and exit code 1."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DigitlabError as error:
            # Typer bundles its own Click, so a ClickException from `click` would not be caught.
            typer.echo(f"Error: {error}", err=True)
            raise typer.Exit(1) from None


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
