"""`digitlab serve`: the drawing page and the REST API on uvicorn."""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from digitlab.cli.app import app, native_stderr_silenced
from digitlab.cli.predict import NotDigitThreshold
from digitlab.inference.digit_score import DEFAULT_NOT_DIGIT_THRESHOLD

if TYPE_CHECKING:
    from digitlab.inference.predictor import Predictor

#: Connections one server process keeps open at once (uvicorn's `limit_concurrency`).
MAX_CONNECTIONS = 512

_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def default_allowed_hosts(host: str) -> list[str]:
    """The Host names a server listening on `host` answers without `--allowed-host`.

    A loopback address answers the loopback names; 0.0.0.0 or :: (every interface) those
    and the machine's name; any other address or name itself. A page on another site whose
    DNS name is made to point here still sends its own name, so it gets 400 and cannot
    read the answers.
    """
    name = f"[{host}]" if ":" in host else host
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return list(dict.fromkeys([name, *_LOOPBACK_NAMES])) if host == "localhost" else [name]
    if address.is_loopback:
        return list(dict.fromkeys([name, *_LOOPBACK_NAMES]))
    if address.is_unspecified:
        return [*_LOOPBACK_NAMES, socket.gethostname()]
    return [name]


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
            help="Server processes, each with its own copy of the model, taking the requests "
            "of the connections it accepts (default: 1).",
            show_default=False,
        ),
    ] = None,
    readers: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Processes per server process that read /read's images, each taking the next "
            "from one queue; 0 reads them in the server process (default: the cores this "
            "process may use, at most 4, shared out among the server processes).",
            show_default=False,
        ),
    ] = None,
    access_log: Annotated[
        bool, typer.Option(help="Log every request (default: off).", show_default=False)
    ] = False,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            help="A Host name to answer besides the address listened on (repeatable; * for "
            "any). Requests naming another host get 400 (default: the loopback names for a "
            "loopback address, the machine's name too for 0.0.0.0).",
            show_default=False,
        ),
    ] = None,
    samples_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder keeping the digits people correct on the page, to teach the model "
            "from (default: samples in the user data folder).",
            show_default=False,
        ),
    ] = None,
    max_samples: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Samples the folder holds at most; more are refused (default: 10000).",
            show_default=False,
        ),
    ] = None,
    teach_epochs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Epochs of each fine-tune the page starts (default: finetune's).",
            show_default=False,
        ),
    ] = None,
    teach_replay: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="MNIST training images replayed in each fine-tune the page starts, so that "
            "nothing else is forgotten (default: finetune's).",
            show_default=False,
        ),
    ] = None,
    request_timeout: Annotated[
        float,
        typer.Option(
            min=0.1,
            help="Seconds a client has to send a whole request, headers and body, before "
            "its connection is closed (default: 10).",
            show_default=False,
        ),
    ] = 10.0,
    not_digit_threshold: NotDigitThreshold = DEFAULT_NOT_DIGIT_THRESHOLD,
) -> None:
    """Serve the draw-a-digit page at / and the REST API (/predict, /read, /samples,
    /finetune, /health, /docs)."""
    import uvicorn

    from digitlab.serve.app import (
        ALLOWED_HOSTS_ENVIRONMENT_VARIABLE,
        MODEL_ENVIRONMENT_VARIABLE,
        NOT_DIGIT_THRESHOLD_ENVIRONMENT_VARIABLE,
        READERS_ENVIRONMENT_VARIABLE,
        create_app,
        load_served_model,
    )
    from digitlab.serve.protocol import ConnectionLimits, GuardedHttpToolsProtocol
    from digitlab.serve.teaching import TEACHING_ENVIRONMENT_VARIABLE, TeachingSettings
    from digitlab.training.devices import usable_cores

    processes = workers or 1
    cores = min(4, usable_cores())
    reader_processes = readers if readers is not None else max(1, cores // processes)
    # Load before the server starts so that a bad model is one clear error line, not a
    # traceback from inside uvicorn's start-up.
    with native_stderr_silenced():
        predictor = load_served_model(model, not_digit_threshold)
    typer.echo(
        f"Serving {predictor.name} on http://{host}:{port}/ with {processes} "
        f"process{'es' if processes > 1 else ''} and "
        f"{_readers_text(reader_processes, processes, predictor)} "
        "(Ctrl-C stops)",
        err=True,
    )
    hosts = [*default_allowed_hosts(host), *(allowed_host or [])]
    teaching = TeachingSettings(
        samples_dir=samples_dir.resolve() if samples_dir is not None else None,
        epochs=teach_epochs,
        replay=teach_replay,
        **({"max_samples": max_samples} if max_samples is not None else {}),
    )
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "access_log": access_log,
        "log_level": "warning",
        "http": functools.partial(
            GuardedHttpToolsProtocol, limits=ConnectionLimits(request_timeout_s=request_timeout)
        ),
        # Open connections per process; past it, requests get 503. Each holds at most a
        # head and a read-ahead of its body, so this bounds what idle clients can hold.
        "limit_concurrency": MAX_CONNECTIONS,
    }
    if processes == 1:
        served = create_app(
            model,
            predictor=predictor,
            allowed_hosts=hosts,
            teaching=teaching,
            reader_processes=reader_processes,
        )
        uvicorn.run(served, **options)
        return
    # Each worker process loads its own copy (uvicorn starts them afresh and imports the
    # app factory by name); this process only hands out connections. Its own load above
    # was the check that turns a bad model into one error line: worth one extra load.
    del predictor
    os.environ[MODEL_ENVIRONMENT_VARIABLE] = str(model.resolve()) if model is not None else ""
    os.environ[ALLOWED_HOSTS_ENVIRONMENT_VARIABLE] = ",".join(hosts)
    os.environ[NOT_DIGIT_THRESHOLD_ENVIRONMENT_VARIABLE] = repr(not_digit_threshold)
    os.environ[TEACHING_ENVIRONMENT_VARIABLE] = teaching.model_dump_json()
    os.environ[READERS_ENVIRONMENT_VARIABLE] = str(reader_processes)
    uvicorn.run(
        "digitlab.serve.app:app_from_environment", factory=True, workers=processes, **options
    )


def _readers_text(readers: int, processes: int, predictor: Predictor) -> str:
    """What the start-up line says of the number readers of `processes` server processes."""
    from digitlab.serve.readers import can_read_with

    if readers and not can_read_with(predictor):
        return "no number readers (they load ONNX models only)"
    if readers == 0:
        return "no number readers"
    each = " each" if processes > 1 else ""
    return f"{readers} number reader{'s' if readers > 1 else ''}{each}"
