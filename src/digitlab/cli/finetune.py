"""`digitlab finetune`: teach a trained model one person's handwriting (`training.finetune`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from digitlab.cli.app import app, import_keras_quietly
from digitlab.training.finetune import DEFAULT_EPOCHS, DEFAULT_REPLAY, FinetuneScores


@app.command("finetune")
def finetune_command(
    model: Annotated[
        Path, typer.Argument(help="The trained model to start from (.keras).", metavar="MODEL")
    ],
    data_dir: Annotated[
        Path,
        typer.Argument(
            help="A person's digits: DATA_DIR/<label>/<image>, labels 0-9, any image size.",
            metavar="DATA_DIR",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", help="New run folder for the fine-tuned model.", metavar="RUN_DIR"),
    ],
    epochs: Annotated[
        int,
        typer.Option(
            min=1,
            show_default=False,
            help=f"Passes over the person's digits (default: {DEFAULT_EPOCHS}).",
        ),
    ] = DEFAULT_EPOCHS,
    replay: Annotated[
        int,
        typer.Option(
            min=0,
            show_default=False,
            metavar="N",
            help="MNIST training images mixed into each epoch, so that other writers' digits "
            f"are not forgotten (default: {DEFAULT_REPLAY}).",
        ),
    ] = DEFAULT_REPLAY,
    seed: Annotated[
        int,
        typer.Option(
            show_default=False, help="Seed of the split, draws and augmentation (default: 0)."
        ),
    ] = 0,
) -> None:
    """Fine-tune MODEL on a person's digits; print held-out and MNIST accuracy before and after."""
    from digitlab.training.finetune import finetune

    import_keras_quietly()
    result = finetune(model, data_dir, out, epochs=epochs, replay=replay, seed=seed, verbose=1)
    typer.echo(_line("Your held-out digits", result.before, result.after, "person"))
    typer.echo(_line("MNIST test set", result.before, result.after, "mnist"))
    typer.echo(
        f"Fine-tuned in {result.seconds:.0f} s; model: {result.model_path} "
        f"(ONNX copy: {result.onnx_path.name})"
    )


def _line(title: str, before: FinetuneScores, after: FinetuneScores, field: str) -> str:
    """`title: before -> after`, or why there is no figure."""
    old, new = getattr(before, field), getattr(after, field)
    if old is None or new is None:
        return f"{title}: none held out (too few images per label)"
    return f"{title}: {old:.2%} -> {new:.2%}"
