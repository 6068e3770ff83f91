"""`digitlab serve`: the drawing page and the REST API on uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
    access_log: Annotated[
        bool, typer.Option(help="Log every request (default: off).", show_default=False)
    ] = False,
) -> None:
    """Serve the draw-a-digit page at / and the REST API (/predict, /health, /docs)."""
    import uvicorn

    from digitlab.predict import Predictor
    from digitlab.serve.app import create_app

    # Load before the server starts so that a bad model is one clear error line, not a
    # traceback from inside uvicorn's start-up.
    with native_stderr_silenced():
        predictor = Predictor.load(model)
    typer.echo(f"Serving {predictor.name} on http://{host}:{port}/ (Ctrl-C stops)", err=True)
    uvicorn.run(
        create_app(predictor=predictor),
        host=host,
        port=port,
        access_log=access_log,
        log_level="warning",
    )
