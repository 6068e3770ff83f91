"""`digitlab info`: versions, the Keras backend, devices and the data cache at a glance."""

from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path
from typing import Annotated

import typer

from digitlab.cli.app import app, import_keras_quietly


def _version(*distributions: str) -> str:
    """The installed version of the first of `distributions` that is installed."""
    for name in distributions:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "not installed"


def _devices(backend: str) -> list[str]:
    """The devices the Keras backend sees, as "TYPE:name" strings."""
    if backend == "tensorflow":
        import tensorflow as tf

        return [
            f"{device.device_type}:{device.name.rsplit(':', 1)[-1]}"
            for device in tf.config.list_physical_devices()
        ]
    if backend == "jax":
        import jax

        return [f"{device.platform.upper()}:{device.id}" for device in jax.devices()]
    if backend == "torch":
        import torch

        return ["CPU:0", *(f"GPU:{index}" for index in range(torch.cuda.device_count()))]
    return [f"unknown for backend {backend}"]


@app.command("info")
def info(
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            help="Cache folder to report on (default: $DIGITLAB_CACHE, else the user cache "
            "folder).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Print versions, the Keras backend, the devices seen and the MNIST cache's state."""
    import_keras_quietly()
    import keras

    from digitlab import __version__
    from digitlab.data.mnist_cache import mnist_cache_status
    from digitlab.tables import text_table

    backend = keras.backend.backend()
    devices = _devices(backend)
    cache_path, cache_state = mnist_cache_status(cache_dir)
    rows = {
        "digitlab": __version__,
        "python": platform.python_version(),
        "keras": keras.__version__,
        "tensorflow": _version("tensorflow", "tensorflow-cpu"),
        "backend": backend,
        "devices": ", ".join(devices),
        "gpu": "yes" if any(device.startswith("GPU") for device in devices) else "no",
        "cache": str(cache_path.parent),
        "mnist": cache_state,
    }
    typer.echo(text_table(list(rows.items())))
