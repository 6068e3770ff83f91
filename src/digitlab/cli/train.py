"""`digitlab train` and `digitlab models`: training runs and the model registry.

Keras is imported inside the commands so `digitlab --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from digitlab.cli.app import app
from digitlab.errors import ConfigError
from digitlab.training.config import TrainConfig

_DISTRIBUTED = "Distributed (JAX backend, see docs/distributed.md)"
"""The help panel of the distributed-training options."""
_PLACEMENT = "Threads and devices (see docs/distributed.md)"
"""The help panel of the thread and device options."""


def _setting(name: str, *names: str, unset: str = "none", **extra: Any) -> Any:
    """A Typer option for the `TrainConfig` field `name`: its help is the field's
    description and its shown default the field's (`unset` says what a None default means).

    The option itself defaults to None, "not given", so a preset or a config file decides.
    """
    field = TrainConfig.model_fields[name]
    default = field.default
    if default is None:
        shown = unset
    elif isinstance(default, bool):
        shown = "on" if default else "off"
    else:
        shown = str(default)
    return typer.Option(*names, help=field.description, show_default=shown, **extra)


def _option(*names: str, text: str, unset: str = "none", **extra: Any) -> Any:
    """A Typer option that is not a training setting, defaulting to None (`unset`)."""
    return typer.Option(*names, help=text, show_default=unset, **extra)


@app.command("train")
def train_command(
    model: Annotated[str | None, _setting("model")] = None,
    preset: Annotated[
        str | None,
        _option(
            text="Start from a preset: fast (99% in seconds) or best (the strongest "
            "single model); other flags override it",
        ),
    ] = None,
    epochs: Annotated[int | None, _setting("epochs")] = None,
    batch_size: Annotated[int | None, _setting("batch_size")] = None,
    augment: Annotated[bool | None, _setting("augment", "--augment/--no-augment")] = None,
    lr: Annotated[float | None, _setting("lr")] = None,
    val_fraction: Annotated[float | None, _setting("val_fraction")] = None,
    seed: Annotated[int | None, _setting("seed")] = None,
    dataset: Annotated[str | None, _setting("dataset")] = None,
    limit: Annotated[int | None, _setting("limit", unset="all", metavar="N")] = None,
    threads: Annotated[
        int | None,
        _setting("threads", unset="all cores", metavar="N", rich_help_panel=_PLACEMENT),
    ] = None,
    device: Annotated[
        str | None,
        _setting("device", unset="auto", metavar="DEVICE", rich_help_panel=_PLACEMENT),
    ] = None,
    config: Annotated[
        Path | None,
        _option(
            "--config",
            text="TOML file of settings; flags override it",
            metavar="FILE.toml",
        ),
    ] = None,
    settings: Annotated[
        list[str] | None,
        _option(
            "--set",
            text="Any other setting as KEY=VALUE, e.g. lr_schedule=constant or "
            "model_options.hidden_units=[512,512]; repeatable",
            metavar="KEY=VALUE",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        _option(text="New run folder", unset="runs/<model>-<date>-<time>", metavar="RUN_DIR"),
    ] = None,
    resume: Annotated[
        Path | None,
        _option(
            text="Continue an interrupted run from its last completed epoch",
            metavar="RUN_DIR",
        ),
    ] = None,
    coordinator: Annotated[
        str | None,
        _option(
            text="Distributed training: process 0's HOST:PORT, the same for every process",
            metavar="HOST:PORT",
            envvar="DIGITLAB_COORDINATOR",
            rich_help_panel=_DISTRIBUTED,
        ),
    ] = None,
    num_processes: Annotated[
        int | None,
        _option(
            text="Distributed training: how many processes take part",
            envvar="DIGITLAB_NUM_PROCESSES",
            rich_help_panel=_DISTRIBUTED,
        ),
    ] = None,
    process_id: Annotated[
        int | None,
        _option(
            text="Distributed training: this process's index, 0 on the coordinator",
            envvar="DIGITLAB_PROCESS_ID",
            rich_help_panel=_DISTRIBUTED,
        ),
    ] = None,
    local_processes: Annotated[
        int | None,
        _option(
            text="Start N distributed worker processes on this machine and wait for them",
            metavar="N",
            rich_help_panel=_DISTRIBUTED,
        ),
    ] = None,
    join_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds to reach the coordinator and for all processes to join",
            rich_help_panel=_DISTRIBUTED,
        ),
    ] = 120.0,
) -> None:
    """Train a model and write a run folder (config, history, curves, checkpoints, model)."""
    from digitlab.distributed import resolve_settings, train_distributed
    from digitlab.training.config import make_config, parse_override
    from digitlab.training.loop import default_run_dir, train

    flags = {
        "model": model,
        "epochs": epochs,
        "batch_size": batch_size,
        "augment": augment,
        "lr": lr,
        "val_fraction": val_fraction,
        "seed": seed,
        "dataset": dataset,
        "limit": limit,
        "threads": threads,
        "device": device,
    }
    overrides = {key: value for key, value in flags.items() if value is not None}
    overrides.update(parse_override(text) for text in settings or [])

    if resume is not None:
        if overrides or config is not None or out is not None or preset is not None:
            raise ConfigError(
                f"{resume}: --resume continues the run with its own settings; "
                "pass no other settings and no --out"
            )
        run_config, run_dir = None, resume
    else:
        run_config = make_config(config, overrides, preset=preset)
        run_dir = out if out is not None else default_run_dir(run_config)
    distributed = resolve_settings(coordinator, num_processes, process_id)
    if local_processes is not None:
        if distributed is not None:
            raise ConfigError(
                "--local-processes starts its own workers; "
                "do not combine it with --coordinator/--num-processes/--process-id"
            )
        worker_args = _train_arguments(
            flags, settings, config, preset, run_dir, resume, join_timeout
        )
        _launch_local(local_processes, worker_args, run_dir)
        return
    new_run_dir = run_dir if resume is None else None
    try:
        if distributed is None:
            result = train(run_config, out=new_run_dir, resume=resume, verbose=1)
        else:
            # The user's --out, not a default: a default name, holding the start time,
            # would differ between the processes.
            result = train_distributed(
                distributed,
                run_config,
                out=out,
                resume=resume,
                # One progress bar is enough: the processes step together.
                verbose=1 if distributed.process_id == 0 else 0,
                timeout=join_timeout,
            )
            typer.echo(
                f"Process {distributed.process_id} of {distributed.num_processes}: "
                f"final weights sha256 {result.weights_sha256}"
            )
    except KeyboardInterrupt:
        typer.echo(f"Interrupted. {_resume_hint(run_dir, 'digitlab train')}", err=True)
        raise typer.Exit(130) from None
    typer.echo(
        f"Best validation accuracy {result.best_val_accuracy:.4f} "
        f"(epoch {result.best_epoch} of {result.epochs_completed}); run folder: {result.run_dir}"
    )


def _train_arguments(
    flags: dict[str, Any],
    settings: list[str] | None,
    config: Path | None,
    preset: str | None,
    run_dir: Path,
    resume: Path | None,
    join_timeout: float,
) -> list[str]:
    """The `digitlab train` arguments that give a worker process this command's settings."""
    if resume is not None:
        arguments = ["--resume", str(resume)]
    else:
        # Every worker gets the folder chosen here: a default name holds the start time.
        arguments = ["--out", str(run_dir)]
        if config is not None:
            arguments += ["--config", str(config)]
        if preset is not None:
            arguments += ["--preset", preset]
        for key, value in flags.items():
            option = "--" + key.replace("_", "-")
            if isinstance(value, bool):
                arguments.append(option if value else f"--no-{key}")
            elif value is not None:
                arguments += [option, str(value)]
        for text in settings or []:
            arguments += ["--set", text]
    return [*arguments, "--join-timeout", str(join_timeout)]


def _launch_local(num_processes: int, worker_args: list[str], run_dir: Path) -> None:
    from digitlab.local_processes import run_local_processes

    try:
        run_local_processes(
            num_processes, worker_args, on_event=lambda line: typer.echo(line, err=True)
        )
    except KeyboardInterrupt:
        hint = _resume_hint(run_dir, f"digitlab train --local-processes {num_processes}")
        typer.echo(f"Interrupted; stopped all {num_processes} workers. {hint}", err=True)
        raise typer.Exit(130) from None


def _resume_hint(run_dir: Path, command: str) -> str:
    """After Ctrl-C: `command --resume RUN_DIR`, but only when the folder holds a run."""
    from digitlab.training.run_folder import RunFolder

    if RunFolder(run_dir).holds_run():
        return f"Continue from the last completed epoch with: {command} --resume {run_dir}"
    return f"The run had not started in {run_dir}; there is nothing to resume."


@app.command("models")
def models_command() -> None:
    """List the registered models with their parameter counts (for 10 classes)."""
    from digitlab.models import MODELS, build_model
    from digitlab.tables import text_table

    rows = [
        [
            name,
            f"{build_model(name).count_params():,} parameters",
            (builder.__doc__ or "").strip().splitlines()[0],
        ]
        for name, builder in MODELS.items()
    ]
    typer.echo(text_table(rows, right={1}))
