"""`digitlab serve`: the drawing page and the REST API on uvicorn."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from digitlab.cli.app import app, native_stderr_silenced


@app.command("serve")
def serve_command(
    model: Annotated[
        Path | None,
        typer.Option(
            help="Model file to serve (default: the shipped pretrained model).",
            show_default=False,
        ),
    ] = None,
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on; 0.0.0.0 exposes the server to the network "
            "(default: 127.0.0.1).",
            show_default=False,
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=1, max=65535, help="Port (default: 8000).", show_default=False)
    ] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Server processes, each with its own copy of the model (default: the cores "
            "this process may use, at most 4).",
            show_default=False,
        ),
    ] = None,
    access_log: Annotated[
        bool, typer.Option(help="Log every request (default: off).", show_default=False)
    ] = False,
) -> None:
    """Serve the draw-a-digit page at / and the REST API (/predict, /health, /docs)."""
    import uvicorn

    from digitlab.serve.app import MODEL_ENVIRONMENT_VARIABLE, create_app, load_served_model
    from digitlab.training.devices import usable_cores

    processes = workers or min(4, usable_cores())
    # Load before the server starts so that a bad model is one clear error line, not a
    # traceback from inside uvicorn's start-up.
    with native_stderr_silenced():
        predictor = load_served_model(model)
    typer.echo(
        f"Serving {predictor.name} on http://{host}:{port}/ with {processes} "
        f"process{'es' if processes > 1 else ''} (Ctrl-C stops)",
        err=True,
    )
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "access_log": access_log,
        "log_level": "warning",
    }
    if processes == 1:
        uvicorn.run(create_app(predictor=predictor), **options)
        return
    # Each worker process loads its own copy (uvicorn starts them afresh and imports the
    # app factory by name); this process only hands out connections. Its own load above
    # was the check that turns a bad model into one error line: worth one extra load.
    del predictor
    os.environ[MODEL_ENVIRONMENT_VARIABLE] = str(model.resolve()) if model is not None else ""
    uvicorn.run(
        "digitlab.serve.app:app_from_environment", factory=True, workers=processes, **options
    )
