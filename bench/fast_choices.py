"""What makes the `fast` preset fast: the preset against one change at a time.

Each variant trains the `fast` preset with one setting changed (XLA, bfloat16 mixed
precision, the JAX backend, batch size, epochs, label smoothing, thread count, the `cnn`
model), each in its own process so backends and precision policies do not leak, and
reports the seconds `digitlab.train` took (data loading, model building, training and the
run folder) and the MNIST test accuracy of the model it saved. Writes the table into
docs/results.md.

    .venv/bin/python bench/fast_choices.py
    .venv/bin/python bench/fast_choices.py --variants preset jax --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from digitlab.tables import markdown_table
from publishing import publish

HEADING = "What the fast preset is made of"
# name -> (what changes, config overrides, environment, precision policy)
VARIANTS: dict[str, tuple[str, dict, dict, str]] = {
    "preset": (
        "the preset: strided CNN, TensorFlow, float32, no XLA, batch 256, 2 epochs",
        {},
        {},
        "float32",
    ),
    "xla": ("XLA on (`jit_compile=true`)", {"jit_compile": True}, {}, "float32"),
    "bfloat16": ("bfloat16 mixed precision (oneDNN uses AMX here)", {}, {}, "mixed_bfloat16"),
    "jax": (
        "JAX backend (XLA-compiled, as Keras runs it there)",
        {},
        {"KERAS_BACKEND": "jax"},
        "float32",
    ),
    "batch128": ("batch 128, lr 0.01", {"batch_size": 128, "lr": 0.01}, {}, "float32"),
    "batch512": ("batch 512, lr 0.03", {"batch_size": 512, "lr": 0.03}, {}, "float32"),
    "one_epoch": ("1 epoch", {"epochs": 1, "warmup_epochs": 0.25}, {}, "float32"),
    "one_epoch_b128": (
        "1 epoch, batch 128, lr 0.02, warm-up 0.2 epochs",
        {"epochs": 1, "batch_size": 128, "warmup_epochs": 0.2},
        {},
        "float32",
    ),
    "one_epoch_b128_seed1": (
        "the same, seed 1",
        {"epochs": 1, "batch_size": 128, "warmup_epochs": 0.2, "seed": 1},
        {},
        "float32",
    ),
    "no_smoothing": ("no label smoothing", {"label_smoothing": 0.0}, {}, "float32"),
    "one_thread": ("1 thread", {"threads": 1}, {}, "float32"),
    "cnn": (
        "the `cnn` model instead, 1 epoch, batch 128, lr 0.003",
        {"model": "cnn", "epochs": 1, "batch_size": 128, "lr": 0.003, "warmup_epochs": 0.25},
        {},
        "float32",
    ),
}


def worker(name: str, out: Path) -> None:
    """Train one variant in this process; print its result as one JSON line."""
    import keras
    import numpy as np

    from digitlab.data.sources import load_mnist
    from digitlab.inference.modelfile import load_keras_model
    from digitlab.training.config import make_config
    from digitlab.training.loop import train

    _, overrides, _, policy = VARIANTS[name]
    keras.mixed_precision.set_global_policy(policy)
    config = make_config(preset="fast", overrides=overrides)
    started = time.perf_counter()
    result = train(config, out=out, verbose=0)
    seconds = time.perf_counter() - started
    _, (x_test, y_test) = load_mnist()
    model = load_keras_model(result.model_path)
    accuracy = float(np.mean(model.predict(x_test, verbose=0).argmax(axis=1) == y_test))
    print(json.dumps({"seconds": seconds, "accuracy": accuracy}))


def run_variant(name: str, work: Path) -> dict:
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **VARIANTS[name][2]}
    completed = subprocess.run(
        [sys.executable, __file__, "--worker", name, str(work / name)],
        env=environment,
        capture_output=True,
        text=True,
    )
    if completed.returncode != 0:
        return {"error": completed.stderr.strip().splitlines()[-1]}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def table(rows: list[list[str]]) -> str:
    headers = ["variant", "seconds in `digitlab.train`", "MNIST test accuracy"]
    return markdown_table(headers, rows, right={1, 2})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument(
        "--no-write",
        dest="write",
        action="store_false",
        help="print only; leave docs/results.md alone",
    )
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], Path(args.worker[1]))
        return

    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="fast-choices-") as work:
        for name in args.variants:
            result = run_variant(name, Path(work))
            label = VARIANTS[name][0]
            if "error" in result:
                rows.append([label, f"failed: {result['error']}", ""])
            else:
                rows.append([label, f"{result['seconds']:.1f}", f"{result['accuracy']:.2%}"])
            print(table(rows[-1:]), flush=True)
    context = (
        f"Measured by `.venv/bin/python bench/fast_choices.py` on {os.cpu_count()} CPU cores "
        f"(load average {load:.1f} at the start), one run per variant, each in a new "
        "process: the seconds exclude the interpreter start and imports, and vary by a "
        "second or two from run to run on this shared machine."
    )
    publish(HEADING, context, table(rows), args.write)


if __name__ == "__main__":
    main()
