"""The root Typer app and its command groups; command modules register on these."""

from __future__ import annotations

from typing import Any

import click
import typer
from typer.core import TyperGroup

from digitlab.errors import DigitlabError


class _ReportingGroup(TyperGroup):
    """Turns a `DigitlabError` from any command into one line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DigitlabError as error:
            raise click.ClickException(str(error)) from None


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
