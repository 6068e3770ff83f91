"""The command line: `digitlab VERB`. Each module registers its verbs on `app`."""

from __future__ import annotations

import os

# TensorFlow's C++ start-up chatter hides the output people came for.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from digitlab.cli import (  # noqa: E402,F401  (registers the verbs)
    data,
    ensemble,
    evaluate,
    explore,
    finetune,
    info,
    predict,
    read,
    serve,
    train,
)
from digitlab.cli.app import app  # noqa: E402


def main() -> None:
    """Entry point of the `digitlab` console script."""
    app()
