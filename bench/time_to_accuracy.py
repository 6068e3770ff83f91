"""Time to 99% MNIST test accuracy: the keras-io convnet against digitlab's `fast` preset.

In one process, on the same data (the stratified 54,000-image training split and 6,000-image
validation split that digitlab's runs use, seed 0; the 10,000 MNIST test images), this trains

- the keras-io `mnist_convnet` example as published: two 3x3 convolutions (32, 64) with max
  pooling, dropout 0.5, Adam (learning rate 0.001), batch 128, 15 epochs;
- digitlab's `fast` preset through `digitlab.train`, run folder and all;

and snapshots each one's weights about every `--every` seconds of training and at every
epoch end; the snapshots are scored on the test set after training, so scoring takes no
time from the runs. The clock covers model building, data preparation and training.
Then it times `digitlab train --preset fast` as a user runs it (a new process: interpreter
start, imports, data loading from the cache, training, run folder), `--repeats` times, and
scores each model on the test set afterwards.

It prints the machine's float32 matmul GFLOP/s and each model's estimated training FLOPs per
image (3x the forward pass), so the times can be read against the hardware's limit, and
writes the tables into docs/results.md.

    .venv/bin/python bench/time_to_accuracy.py
    .venv/bin/python bench/time_to_accuracy.py --convnet-epochs 4 --repeats 1 --no-write
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

from digitlab.data.sources import load_mnist  # noqa: E402
from digitlab.inference.modelfile import load_keras_model  # noqa: E402
from digitlab.models import build_model  # noqa: E402
from digitlab.tables import markdown_table  # noqa: E402
from digitlab.training.config import make_config  # noqa: E402
from digitlab.training.loop import split_train_validation, train  # noqa: E402
from digitlab.training.run_folder import RunFolder  # noqa: E402
from inference import multiply_adds  # noqa: E402
from publishing import publish  # noqa: E402

TARGET = 0.99
HEADING = "Time to 99% test accuracy"


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """The best float32 GFLOP/s of a size x size matrix product in TensorFlow."""
    import tensorflow as tf

    a = tf.random.normal((size, size))
    product = tf.function(lambda m: tf.matmul(m, m))
    product(a).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        product(a).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def training_gflop_per_image(model: keras.Model) -> float:
    """Estimated training GFLOP per image: forward (2 FLOP per multiply-add) plus backward
    (about twice the forward)."""
    return 3 * 2 * multiply_adds(model) / 1e9


def build_keras_io_convnet() -> keras.Model:
    """keras-io's `mnist_convnet` example, layer for layer (inputs scaled to 0..1, 28x28x1)."""
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ],
        name="keras_io_convnet",
    )


@dataclass
class Trace:
    """Test accuracy against training seconds (test evaluations excluded) for one contender."""

    name: str
    points: list[tuple[float, float, float]] = field(default_factory=list)
    """(training seconds, epochs done, test accuracy)."""
    images_seen: int = 0
    gflop_per_image: float = 0.0

    def first_reaching(self, target: float) -> tuple[float, float] | None:
        """(seconds, epochs) when test accuracy first reached `target`, or None."""
        for seconds, epochs, accuracy in self.points:
            if accuracy >= target:
                return seconds, epochs
        return None


class TestClock(keras.callbacks.Callback):
    """Snapshots the model's weights every `every` training seconds and at epoch ends.

    Copying the weights takes about a millisecond, so the training run is left as it would
    be; `score` evaluates every snapshot on the test set once training has finished.
    `started` is when the contender's clock began.
    """

    def __init__(self, started: float, every: float) -> None:
        super().__init__()
        self.started, self.every = started, every
        self.snapshots: list[tuple[float, float, list]] = []
        self.last_check = 0.0
        self.epoch = 0
        self.steps_done = 0

    def training_seconds(self) -> float:
        return time.perf_counter() - self.started

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.steps_done = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps_done = batch + 1
        if self.training_seconds() - self.last_check >= self.every:
            self._snapshot()

    def on_epoch_end(self, epoch, logs=None):
        self.steps_done = self.params["steps"]
        self._snapshot()

    def _snapshot(self) -> None:
        seconds = self.training_seconds()
        epochs = self.epoch + self.steps_done / self.params["steps"]
        self.snapshots.append((seconds, epochs, self.model.get_weights()))
        self.last_check = seconds

    def score(self, trace: Trace, x_test, y_test, images_per_epoch: int) -> None:
        """Evaluate the snapshots on the test set, in order, into `trace`, up to the first
        that reaches TARGET; then the last one. Those two are all the report uses, and
        scoring every snapshot of a long run (over a thousand) took longer than the run."""
        for index, (seconds, epochs, weights) in enumerate(self.snapshots):
            last = index == len(self.snapshots) - 1
            if trace.first_reaching(TARGET) and not last:
                continue
            self.model.set_weights(weights)
            probabilities = self.model.predict(x_test, batch_size=2000, verbose=0)
            accuracy = float(np.mean(probabilities.argmax(axis=1) == y_test))
            trace.points.append((seconds, epochs, accuracy))
        trace.images_seen = int(trace.points[-1][1] * images_per_epoch)


def run_keras_io(split, test, epochs: int, every: float) -> Trace:
    x_train, y_train, x_val, y_val = split
    x_test, y_test = test
    trace = Trace("keras-io mnist_convnet")
    started = time.perf_counter()

    def scale(x):
        return (x.astype("float32") / 255.0)[..., None]

    model = build_keras_io_convnet()
    trace.gflop_per_image = training_gflop_per_image(model)
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    clock = TestClock(started, every)
    model.fit(
        scale(x_train),
        keras.utils.to_categorical(y_train, 10),
        batch_size=128,
        epochs=epochs,
        validation_data=(scale(x_val), keras.utils.to_categorical(y_val, 10)),
        verbose=0,
        callbacks=[clock],
    )
    clock.score(trace, scale(x_test), y_test, len(y_train))
    return trace


def run_fast_preset(test, every: float, work: Path) -> Trace:
    x_test, y_test = test
    config = make_config(preset="fast")
    trace = Trace("digitlab fast preset")
    trace.gflop_per_image = training_gflop_per_image(build_model(config.model))
    started = time.perf_counter()
    images = round(60_000 * (1 - config.val_fraction))
    clock = TestClock(started, every)
    train(config, out=work / "fast-in-process", verbose=0, callbacks=[clock])
    clock.score(trace, x_test, y_test, images)
    return trace


def run_cli(work: Path, repeats: int, test) -> list[tuple[float, float]]:
    """(wall seconds, test accuracy) of `digitlab train --preset fast` in new processes."""
    x_test, y_test = test
    digitlab = Path(sys.executable).with_name("digitlab")
    results = []
    for index in range(repeats):
        out = work / f"fast-cli-{index}"
        started = time.perf_counter()
        subprocess.run(
            [str(digitlab), "train", "--preset", "fast", "--out", str(out)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        seconds = time.perf_counter() - started
        model = load_keras_model(RunFolder(out).model)
        probabilities = model.predict(x_test, batch_size=2000, verbose=0)
        results.append((seconds, float(np.mean(probabilities.argmax(axis=1) == y_test))))
        print(
            f"  digitlab train --preset fast, run {index + 1}: {seconds:.1f} s, "
            f"test accuracy {results[-1][1]:.2%}",
            flush=True,
        )
    return results


def trace_table(traces: list[Trace]) -> str:
    headers = [
        "contender",
        "first reached 99.0% test accuracy",
        "final test accuracy",
        "epochs",
        "training seconds",
        "training MFLOP per image",
        "achieved GFLOP/s",
    ]
    return markdown_table(headers, [trace_cells(trace) for trace in traces], right=range(2, 7))


def trace_cells(trace: Trace) -> list[str]:
    reached = trace.first_reaching(TARGET)
    seconds, epochs, accuracy = trace.points[-1]
    achieved = trace.gflop_per_image * trace.images_seen / seconds
    first = f"{reached[0]:.1f} s (epoch {reached[1]:.2f})" if reached else "not reached"
    return [
        trace.name,
        first,
        f"{accuracy:.2%}",
        f"{epochs:.0f}",
        f"{seconds:.1f}",
        f"{trace.gflop_per_image * 1000:.1f}",
        f"{achieved:.1f}",
    ]


def report(
    traces: list[Trace], cli: list[tuple[float, float]], gflops: float, load: float, every: float
) -> tuple[str, str]:
    convnet, fast = traces
    lines = [trace_table(traces)]
    fast_first = fast.first_reaching(TARGET)
    convnet_first = convnet.first_reaching(TARGET)
    if fast_first and convnet_first:
        ratio = f"**{convnet_first[0] / fast_first[0]:.1f}x** faster to 99.0%"
    elif fast_first:
        ratio = (
            f"more than **{convnet.points[-1][0] / fast_first[0]:.1f}x** faster "
            f"(the convnet never reached 99.0% in {convnet.points[-1][1]:.0f} epochs)"
        )
    else:
        ratio = "no ratio: the fast preset did not reach 99.0%"
    lines += ["", f"Ratio: the fast preset is {ratio} (target: 8x)."]
    if cli:
        seconds = [wall for wall, _ in cli]
        accuracies = ", ".join(f"{accuracy:.2%}" for _, accuracy in cli)
        median = statistics.median(seconds)
        verdict = "met" if median <= 20 and min(a for _, a in cli) >= TARGET else "MISSED"
        lines += [
            "",
            f"`digitlab train --preset fast` as a new process, {len(cli)} runs: "
            f"{', '.join(f'{s:.1f}' for s in seconds)} s wall-clock (median **{median:.1f} s**), "
            f"test accuracy {accuracies} (target: >= 99.0% in <= 20 s: {verdict}).",
        ]
    context = (
        f"Measured by `.venv/bin/python bench/time_to_accuracy.py` on {os.cpu_count()} CPU "
        f"cores (load average {load:.1f} at the start). Float32 matmul (2048x2048, "
        f"TensorFlow): **{gflops:.0f} GFLOP/s**. Training FLOPs are estimated from the "
        "convolution and dense layers (3x the forward pass). Weights are snapshotted every "
        f"{every:g} training seconds (and at epoch ends) and scored on the test set after "
        "training."
    )
    return context, "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--convnet-epochs",
        type=int,
        default=15,
        help="epochs of the keras-io convnet (default: 15, as published)",
    )
    parser.add_argument(
        "--every",
        type=float,
        default=0.5,
        help="training seconds between weight snapshots (default: 0.5)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed `digitlab train --preset fast` processes (default: 3)",
    )
    parser.add_argument(
        "--no-write",
        dest="write",
        action="store_false",
        help="print only; leave docs/results.md alone",
    )
    args = parser.parse_args()

    load = os.getloadavg()[0]
    (x_train, y_train), test = load_mnist()
    split = split_train_validation(x_train, y_train, 0.1, seed=0)
    gflops = matmul_gflops()
    print(f"float32 matmul: {gflops:.0f} GFLOP/s", flush=True)
    work = Path(tempfile.mkdtemp(prefix="time-to-accuracy-"))
    try:
        keras.utils.set_random_seed(0)
        traces = [run_keras_io(split, test, args.convnet_epochs, args.every)]
        print(trace_table(traces[:1]), flush=True)
        traces.append(run_fast_preset(test, args.every, work))
        print(trace_table(traces[1:]), flush=True)
        cli = run_cli(work, args.repeats, test)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    context, text = report(traces, cli, gflops, load, args.every)
    publish(HEADING, context, text, args.write)


if __name__ == "__main__":
    main()
