"""Baselines: digitlab's models against the keras-io convnet and scikit-learn's MLPClassifier.

One table, one machine, one command: test accuracy on the 10,000 MNIST test images,
training seconds, inference images/s in batches of 1,000, and the peak memory of training.

Training every contender takes hours on 2 cores, so this trains the ones named by --train,
one after another, each in its own process (so that its peak memory is its own), and takes
finished ones with --run LABEL=PATH: a digitlab run folder (its summary.json has the
training seconds and peak memory) or a `.keras` file such as an ensemble. The table says
which rows were trained by this command and which came from earlier runs.

- digitlab `mlp`, `cnn`, `resnet`: `digitlab train --model NAME`, default settings;
  `fast`, `best`: `digitlab train --preset NAME`.
- `keras-io`: the keras-io `mnist_convnet` example as published (Adam, batch 128, 15 epochs,
  categorical cross-entropy on 0..1 inputs), on the 54,000-image split digitlab trains on;
  saved behind Rescaling + Reshape so it takes raw 0..255 pixels like digitlab's models.
- `sklearn-mlp`: `MLPClassifier(random_state=0)` (one hidden layer of 100, adam, at most
  200 iterations) on the same split's pixels scaled to 0..1.

Keras models are scored in this process through `digitlab.Predictor` (Keras runtime), the
way bench/inference.py measures speed; the scikit-learn model is scored in its worker with
`predict_proba` on the same batches. Writes the table into docs/results.md ("Baselines").

    .venv/bin/python bench/baselines.py                  # fast, keras-io, sklearn-mlp
    .venv/bin/python bench/baselines.py --train fast sklearn-mlp \\
        --run cnn=src/digitlab/pretrained/digits_cnn.keras --no-write
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Keep TensorFlow's start-up notes out of the output, here and in the children.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from digitlab.atomic import atomic_path, atomic_write_text
from digitlab.cli.app import import_keras_quietly
from digitlab.data.sources import load_mnist
from digitlab.errors import DigitlabError
from digitlab.inference.predictor import Predictor, error_reason
from digitlab.tables import markdown_table
from digitlab.training.loop import split_train_validation
from digitlab.training.run_folder import RunFolder
from inference import timings
from publishing import publish

HEADING = "Baselines"
DIGITLAB_ARGUMENTS = {
    "mlp": ["--model", "mlp"],
    "cnn": ["--model", "cnn"],
    "resnet": ["--model", "resnet"],
    "fast": ["--preset", "fast"],
    "best": ["--preset", "best"],
}
WORKERS = ("keras-io", "sklearn-mlp")
LABELS = {
    **{name: f"digitlab {name}" for name in DIGITLAB_ARGUMENTS},
    "keras-io": "keras-io mnist_convnet",
    "sklearn-mlp": "scikit-learn MLPClassifier",
}
BATCH = 1000
NOT_HERE = "n/a (not trained here)"
RESULT_FILE = "result.json"


class ContenderFailed(Exception):
    """A contender could not be trained or scored; the message says why in one line."""


@dataclass
class Contender:
    """One row of the table. Text in a number's place says why there is no number."""

    label: str
    trained: str
    setup: str = ""
    model_path: Path | None = None
    """A Keras model that this process scores (None for scikit-learn and for failures)."""
    accuracy: float | None = None
    fit_seconds: float | str = NOT_HERE
    process_seconds: float | str = NOT_HERE
    images_per_second: float | None = None
    peak_memory_mb: float | str = NOT_HERE
    error: str = ""


def split_and_test() -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, np.ndarray]]:
    """MNIST as digitlab's runs see it: ((x_train, y_train, x_val, y_val), (x_test, y_test)),
    the training split stratified with seed 0."""
    (x, y), test = load_mnist()
    return split_train_validation(x, y, 0.1, seed=0), test


def batch_images_per_second(predict, images: np.ndarray, repeats: int) -> float:
    """Median images/s of `predict` on the first 1,000 of `images`, after warm-ups."""
    batch = images[:BATCH]
    return len(batch) / statistics.median(timings(lambda: predict(batch), repeats))


# --- workers: each runs as `baselines.py --worker NAME OUT_DIR` in a process of its own ---


def train_keras_io(out: Path, epochs: int) -> dict:
    """Train the keras-io convnet as published; save it, taking raw pixels, as out/model.keras."""
    import keras
    from keras import layers

    from time_to_accuracy import build_keras_io_convnet

    keras.utils.set_random_seed(0)
    (x_train, y_train, x_val, y_val), _ = split_and_test()

    def scale(x):
        return (x.astype("float32") / 255.0)[..., None]

    started = time.perf_counter()
    convnet = build_keras_io_convnet()
    convnet.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    convnet.fit(
        scale(x_train),
        keras.utils.to_categorical(y_train, 10),
        batch_size=128,
        epochs=epochs,
        validation_data=(scale(x_val), keras.utils.to_categorical(y_val, 10)),
        verbose=2,
    )
    fit_seconds = time.perf_counter() - started
    # The published model takes 0..1 floats of shape 28x28x1; these layers let it take the
    # raw 28x28 pixels that digitlab.Predictor feeds every model.
    pixels = keras.Input(shape=(28, 28), name="pixels")
    scaled = layers.Reshape((28, 28, 1))(layers.Rescaling(1 / 255)(pixels))
    model = keras.Model(pixels, convnet(scaled), name="keras_io_convnet_raw_pixels")
    with atomic_path(out / "model.keras") as path:
        model.save(path)
    return {
        "fit_seconds": fit_seconds,
        "setup": f"{convnet.count_params():,} parameters, {epochs} epochs, Adam, batch 128",
    }


def train_sklearn_mlp(out: Path, repeats: int) -> dict:
    """Train and score `MLPClassifier(random_state=0)`; the model is not kept."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    (x_train, y_train, _, _), (x_test, y_test) = split_and_test()

    def scale(x):
        return x.reshape(len(x), -1).astype(np.float32) / 255.0

    started = time.perf_counter()
    classifier = MLPClassifier(random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        classifier.fit(scale(x_train), y_train)
    fit_seconds = time.perf_counter() - started
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    accuracy = float(np.mean(classifier.predict(scale(x_test)) == y_test))
    return {
        "fit_seconds": fit_seconds,
        "accuracy": accuracy,
        # Scaling is timed too: the Keras models rescale inside themselves.
        "images_per_second": batch_images_per_second(
            lambda batch: classifier.predict_proba(scale(batch)), x_test, repeats
        ),
        "setup": (
            f"hidden (100,), adam, {classifier.n_iter_} iterations of at most "
            f"{classifier.max_iter}{'' if converged else ' (did not converge)'}"
        ),
    }


def run_worker(name: str, out: Path, args: argparse.Namespace) -> None:
    if name == "keras-io":
        result = train_keras_io(out, args.convnet_epochs)
    else:
        result = train_sklearn_mlp(out, args.repeats)
    atomic_write_text(out / RESULT_FILE, json.dumps(result, indent=1) + "\n")


# --- the main process: train each contender in a child process, then score them ---


def run_child(command: list[str], log_path: Path) -> tuple[float, float]:
    """Run `command` to the end; return (wall seconds, its peak resident memory in MiB).

    Raises `ContenderFailed` with the log's last line when it exits with an error.
    """
    started = time.perf_counter()
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        # wait4 reports this child's own ru_maxrss (KiB on Linux), which Popen does not expose.
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        lines = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        last = lines[-1] if lines else "no output"
        raise ContenderFailed(f"exit code {process.returncode}: {last} (log: {log_path})")
    return seconds, usage.ru_maxrss / 1024


def read_summary(run_dir: Path) -> dict:
    try:
        return RunFolder(run_dir).read_summary()
    except DigitlabError as error:
        raise ContenderFailed(str(error)) from None


def run_setup(summary: dict) -> str:
    return (
        f"{summary['model']}, {summary['params']:,} parameters, "
        f"{summary['epochs_completed']} epochs"
    )


def train_here(name: str, work: Path, args: argparse.Namespace) -> Contender:
    """Train contender `name` in a child process; fill in what training tells."""
    contender = Contender(LABELS[name], "this run")
    out = work / name
    log = work / f"{name}.log"
    if name in DIGITLAB_ARGUMENTS:
        command = [
            sys.executable,
            "-m",
            "digitlab",
            "train",
            *DIGITLAB_ARGUMENTS[name],
            "--out",
            str(out),
        ]
    else:
        out.mkdir()
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            name,
            str(out),
            "--convnet-epochs",
            str(args.convnet_epochs),
            "--repeats",
            str(args.repeats),
        ]
    print(f"training {contender.label}: {shlex.join(command)}", flush=True)
    contender.process_seconds, contender.peak_memory_mb = run_child(command, log)
    if name in DIGITLAB_ARGUMENTS:
        summary = read_summary(out)
        contender.fit_seconds = summary["train_seconds"]
        contender.setup = run_setup(summary)
        contender.model_path = RunFolder(out).model
        return contender
    result = json.loads((out / RESULT_FILE).read_text(encoding="utf-8"))
    contender.fit_seconds = result["fit_seconds"]
    contender.setup = result["setup"]
    contender.accuracy = result.get("accuracy")
    contender.images_per_second = result.get("images_per_second")
    if name == "keras-io":
        contender.model_path = out / "model.keras"
    return contender


def from_earlier_run(label: str, path: Path) -> Contender:
    """A contender trained before: a digitlab run folder or a `.keras` model file."""
    contender = Contender(label, f"earlier run ({path})")
    if path.is_dir():
        summary = read_summary(path)
        contender.model_path = RunFolder(path).model
        contender.fit_seconds = summary["train_seconds"]
        # Runs from before summary.json recorded memory have no figure for it.
        contender.peak_memory_mb = summary.get("peak_memory_mb", "not recorded")
        contender.setup = run_setup(summary)
    elif path.is_file() and path.suffix == ".keras":
        contender.model_path = path
        contender.setup = "model file, no training record"
    else:
        raise ContenderFailed(f"{path}: neither a digitlab run folder nor a .keras file")
    return contender


def score_keras(contender: Contender, x_test, y_test, repeats: int) -> Contender:
    """The contender with the test accuracy and batch images/s of its Keras model (Keras
    runtime) filled in."""
    predictor = Predictor.load(contender.model_path)
    contender.accuracy = float(np.mean(predictor.predict(x_test).digits == y_test))
    contender.images_per_second = batch_images_per_second(predictor.predict, x_test, repeats)
    return contender


def attempt(fallback: Contender, step: Callable[..., Contender], *arguments) -> Contender:
    """`step(*arguments)`'s contender, or `fallback` with the error if it fails."""
    try:
        contender = step(*arguments)
    except Exception as error:  # a contender that fails gets its row; the others go on
        return dataclasses.replace(fallback, error=error_reason(error))
    return contender


def cell(value: float | str | None, form: str) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else format(value, form)


COLUMNS = [
    "contender",
    "trained",
    "test accuracy",
    "training seconds (fit)",
    "process seconds (start to exit)",
    "inference images/s (batches of 1,000)",
    "peak training memory (MiB)",
    "setup",
]


def cells(c: Contender) -> list[str]:
    if c.error:
        return [c.label, c.trained, "FAILED", "", "", "", "", c.error]
    return [
        c.label,
        c.trained,
        cell(c.accuracy, ".2%"),
        cell(c.fit_seconds, ",.1f"),
        cell(c.process_seconds, ",.1f"),
        cell(c.images_per_second, ",.0f"),
        cell(c.peak_memory_mb, ",.0f"),
        c.setup,
    ]


def table(contenders: list[Contender]) -> str:
    return markdown_table(COLUMNS, [cells(c) for c in contenders], right=range(2, 7))


def context_line(contenders: list[Contender], load: float, repeats: int) -> str:
    earlier = [c.label for c in contenders if c.trained != "this run"]
    earlier_text = (
        f"Rows from earlier runs ({', '.join(earlier)}) were not trained by this command: "
        "their training seconds and memory are those runs' own records (summary.json), taken "
        "under whatever load the machine had then."
        if earlier
        else "Every row was trained by this command."
    )
    command = shlex.join([".venv/bin/python", "bench/baselines.py", *sys.argv[1:]])
    return (
        f"Measured by `{command}` on {os.cpu_count()} CPU cores (load average {load:.1f} at "
        "the start; other work on the machine slows these figures). Contenders trained here "
        "ran one after another, each in its own process: training seconds are the fit (for "
        "digitlab, the sum of its epochs), process seconds run from interpreter start to exit "
        "(imports, data loading, writing the model), peak memory is that process's maximum "
        "resident set. Test accuracy is on the 10,000 MNIST test images; inference is the "
        f"median of {repeats} batches of 1,000 test images after warm-up, Keras models "
        "through `digitlab.Predictor` (Keras runtime), scikit-learn through `predict_proba`. "
        f"{earlier_text}"
    )


def earlier_run(text: str) -> tuple[str, Path]:
    label, separator, path = text.partition("=")
    if not separator or not label or not path:
        raise argparse.ArgumentTypeError(f"expected LABEL=PATH, got {text!r}")
    return label, Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--train",
        nargs="*",
        default=["fast", "keras-io", "sklearn-mlp"],
        choices=[*DIGITLAB_ARGUMENTS, *WORKERS],
        metavar="NAME",
        help="contenders to train here, one after another: mlp cnn resnet fast "
        "best keras-io sklearn-mlp (default: fast keras-io sklearn-mlp)",
    )
    parser.add_argument(
        "--run",
        action="append",
        type=earlier_run,
        default=[],
        metavar="LABEL=PATH",
        help="a contender trained before: a digitlab run folder or a .keras "
        "file (e.g. an ensemble); repeatable (default: none)",
    )
    parser.add_argument(
        "--convnet-epochs",
        type=int,
        default=15,
        help="epochs of the keras-io convnet (default: 15, as published)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=10,
        help="timed 1,000-image batches per contender (default: 10)",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        metavar="DIR",
        help="a new folder to keep the trained runs and logs in (default: a "
        "temporary folder, removed at the end)",
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print only; leave docs/results.md alone"
    )
    parser.add_argument("--worker", nargs=2, metavar=("NAME", "OUT_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        name, out = args.worker
        run_worker(name, Path(out), args)
        return
    if args.keep is not None and args.keep.exists() and any(args.keep.iterdir()):
        parser.error(f"--keep {args.keep}: folder exists and is not empty")

    load = os.getloadavg()[0]
    contenders = []
    with tempfile.TemporaryDirectory(prefix="baselines-") as scratch:
        work = args.keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        # Every trainer starts before this process loads TensorFlow or the data: a child's
        # ru_maxrss starts from its parent's high-water mark, so a big parent would hide it.
        for name in args.train:
            trained = Contender(LABELS[name], "this run")
            contenders.append(attempt(trained, train_here, name, work, args))
            print(table(contenders[-1:]), flush=True)
        for label, path in args.run:
            earlier = Contender(label, f"earlier run ({path})")
            contenders.append(attempt(earlier, from_earlier_run, label, path))
        import_keras_quietly()
        _, (x_test, y_test) = load_mnist()
        for index, contender in enumerate(contenders):
            if contender.model_path is not None and not contender.error:
                contenders[index] = attempt(
                    contender, score_keras, contender, x_test, y_test, args.repeats
                )
                print(table([contenders[index]]), flush=True)
    print()
    publish(
        HEADING,
        context_line(contenders, load, args.repeats),
        table(contenders),
        write=not args.no_write,
    )
    if any(contender.error for contender in contenders):
        sys.exit(1)


if __name__ == "__main__":
    main()
