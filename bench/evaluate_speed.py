"""How long `digitlab.evaluate` takes on the 10,000 MNIST test images (target: under 3 s).

Times the reference-size MLP (784-512-256-10 with batch normalisation and dropout; its
weights do not change the time) or a saved model, metrics only and with the four report
files written. Prints the median of three runs of each, in seconds.

    .venv/bin/python bench/evaluate_speed.py [--model MODEL.keras] [--batch-size N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from digitlab.data.sources import load_mnist  # noqa: E402
from digitlab.evaluate import DEFAULT_BATCH_SIZE, evaluate  # noqa: E402

REPEATS = 3


def reference_size_mlp() -> keras.Model:
    """A dense MLP of the reference model's size, taking raw pixels like every digitlab model."""
    layers = [keras.Input((28, 28)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten()]
    for width in (512, 256):
        layers += [
            keras.layers.Dense(width, use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.Activation("relu"),
            keras.layers.Dropout(0.3),
        ]
    layers.append(keras.layers.Dense(10, activation="softmax"))
    return keras.Sequential(layers, name="mlp_reference_size")


def median_seconds(run) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a saved .keras model (default: reference-size MLP)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"prediction batch size (default: {DEFAULT_BATCH_SIZE})")
    args = parser.parse_args()

    _, (x_test, y_test) = load_mnist()
    model = keras.models.load_model(args.model) if args.model else reference_size_mlp()
    print(f"model: {args.model or model.name} ({model.count_params():,} parameters), "
          f"{len(x_test)} test images, batch size {args.batch_size}")
    metrics_only = median_seconds(
        lambda: evaluate(model, x_test, y_test, batch_size=args.batch_size)
    )
    print(f"evaluate, metrics only:      {metrics_only:.3f} s (median of {REPEATS})")
    with tempfile.TemporaryDirectory() as out:
        with_files = median_seconds(
            lambda: evaluate(model, x_test, y_test, batch_size=args.batch_size, out=out)
        )
    print(f"evaluate, with report files: {with_files:.3f} s (median of {REPEATS})")


if __name__ == "__main__":
    main()
