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


def _option(*names: str, text: str, default: Any, **extra: Any) -> Any:
    """A Typer option whose help ends in `(default: X)`, X taken from `TrainConfig`."""
    return typer.Option(*names, help=f"{text} (default: {default})", show_default=False, **extra)


@app.command("train")
def train_command(
    model: Annotated[
        str | None, _option(text="Model name: mlp, cnn or resnet", default=_DEFAULTS.model)
    ] = None,
    epochs: Annotated[int | None, _option(text="Epochs to train", default=_DEFAULTS.epochs)] = None,
    batch_size: Annotated[
        int | None, _option(text="Images per step", default=_DEFAULTS.batch_size)
    ] = None,
    augment: Annotated[
        bool | None,
        _option("--augment/--no-augment", default="on",
                text="Digit-safe augmentation: rotation, shift, zoom, shear, elastic"),
    ] = None,
    lr: Annotated[
        float | None,
        _option(text="Adam learning rate, the peak of the schedule", default=_DEFAULTS.lr),
    ] = None,
    val_fraction: Annotated[
        float | None,
        _option(text="Share of the training set held out for validation, stratified",
                default=_DEFAULTS.val_fraction),
    ] = None,
    seed: Annotated[int | None, _option(text="Random seed", default=_DEFAULTS.seed)] = None,
    dataset: Annotated[
        str | None,
        _option(text="mnist, fashion-mnist, or PATH to an IDX folder or a class-folder tree",
                default=_DEFAULTS.dataset),
    ] = None,
    limit: Annotated[
        int | None,
        _option(text="Train on a stratified subset of N training images", default="all",
                metavar="N"),
    ] = None,
    config: Annotated[
        Path | None,
        _option("--config", text="TOML file of settings; flags override it", default="none",
                metavar="FILE.toml"),
    ] = None,
    settings: Annotated[
        list[str] | None,
        _option("--set", text="Any other setting as KEY=VALUE, e.g. lr_schedule=constant or "
                "model_options.hidden_units=[512,512]; repeatable", default="none",
                metavar="KEY=VALUE"),
    ] = None,
    out: Annotated[
        Path | None,
        _option(text="New run folder", default="runs/<model>-<date>-<time>", metavar="RUN_DIR"),
    ] = None,
    resume: Annotated[
        Path | None,
        _option(text="Continue an interrupted run from its last completed epoch",
                default="none", metavar="RUN_DIR"),
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
