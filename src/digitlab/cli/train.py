"""`digitlab train` and `digitlab models`: training runs and the model registry.

Keras is imported inside the commands so `digitlab --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from digitlab.cli.app import app
from digitlab.config import TrainConfig
from digitlab.errors import ConfigError

_DEFAULTS = TrainConfig()


def _help(text: str, default: Any) -> str:
    return f"{text} (default: {default})"


@app.command("train")
def train_command(
    model: Annotated[
        str | None,
        typer.Option(help=_help("Model name: mlp, cnn or resnet", _DEFAULTS.model),
                     show_default=False),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help=_help("Epochs to train", _DEFAULTS.epochs),
                                 show_default=False)
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help=_help("Images per step", _DEFAULTS.batch_size),
                                 show_default=False)
    ] = None,
    augment: Annotated[
        bool | None,
        typer.Option("--augment/--no-augment",
                     help=_help("Digit-safe augmentation: rotation, shift, zoom, shear, elastic",
                                "on"),
                     show_default=False),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(help=_help("Adam learning rate, the peak of the schedule", _DEFAULTS.lr),
                     show_default=False),
    ] = None,
    val_fraction: Annotated[
        float | None,
        typer.Option(help=_help("Share of the training set held out for validation, "
                                "stratified", _DEFAULTS.val_fraction), show_default=False),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help=_help("Random seed", _DEFAULTS.seed), show_default=False)
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(help=_help("mnist, fashion-mnist, or PATH to an IDX folder or a "
                                "class-folder tree", _DEFAULTS.dataset), show_default=False),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(help=_help("Train on a stratified subset of N training images", "all"),
                     metavar="N", show_default=False),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="TOML file of settings; flags override it (default: none)",
                     metavar="FILE.toml", show_default=False),
    ] = None,
    settings: Annotated[
        list[str] | None,
        typer.Option("--set", help="Any other setting as KEY=VALUE, e.g. lr_schedule=constant "
                     "or model_options.hidden_units=[512,512]; repeatable (default: none)",
                     metavar="KEY=VALUE", show_default=False),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="New run folder (default: runs/<model>-<date>-<time>)",
                     metavar="RUN_DIR", show_default=False),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="Continue an interrupted run from its last completed epoch "
                     "(default: none)", metavar="RUN_DIR", show_default=False),
    ] = None,
) -> None:
    """Train a model and write a run folder (config, history, curves, checkpoints, model)."""
    from digitlab.config import make_config, parse_override
    from digitlab.training import default_run_dir, train

    flags = {
        "model": model, "epochs": epochs, "batch_size": batch_size, "augment": augment,
        "lr": lr, "val_fraction": val_fraction, "seed": seed, "dataset": dataset,
        "limit": limit,
    }
    overrides = {key: value for key, value in flags.items() if value is not None}
    overrides.update(parse_override(text) for text in settings or [])

    if resume is not None:
        if overrides or config is not None or out is not None:
            raise ConfigError(
                f"{resume}: --resume continues the run with its own settings; "
                "pass no other settings and no --out"
            )
        run_config, run_dir = None, resume
    else:
        run_config = make_config(config, overrides)
        run_dir = out if out is not None else default_run_dir(run_config)
    try:
        result = train(
            run_config,
            out=run_dir if resume is None else None,
            resume=resume,
            verbose=1,
        )
    except KeyboardInterrupt:
        typer.echo(
            f"Interrupted. Continue from the last completed epoch with: "
            f"digitlab train --resume {run_dir}",
            err=True,
        )
        raise typer.Exit(130) from None
    typer.echo(
        f"Best validation accuracy {result.best_val_accuracy:.4f} "
        f"(epoch {result.best_epoch} of {result.epochs_completed}); run folder: {result.run_dir}"
    )


@app.command("models")
def models_command() -> None:
    """List the registered models with their parameter counts (for 10 classes)."""
    from digitlab.models import MODELS, build_model

    for name, builder in MODELS.items():
        params = build_model(name).count_params()
        summary = (builder.__doc__ or "").strip().splitlines()[0]
        typer.echo(f"{name:<8} {params:>10,} parameters  {summary}")
