"""Inference speed: images/s in batches of 1,000 and single-image latency, Keras vs ONNX Runtime
(float32, and int8 as `digitlab export --format onnx --int8` writes it).

For each registered model (untrained weights: speed does not depend on them) this builds the
model, exports it to ONNX (float32 and int8), and measures each through `digitlab.Predictor`,
the path the CLI and the web server use: the median time of a 1,000-image batch (as
images/s), and the median and 99th-percentile time of one-image predictions. Prints a table
and writes it into docs/results.md under its own heading (other sections are left alone).

    .venv/bin/python bench/inference.py                   # mlp and cnn
    .venv/bin/python bench/inference.py --models mlp --threads 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitlab.data.sources import load_mnist
from digitlab.inference.predictor import Predictor
from digitlab.inference.quantize import calibration_images, quantize_onnx
from digitlab.tables import markdown_table
from publishing import publish

TARGETS = {  # model -> ONNX Runtime targets: (batch images/s, single-image median ms)
    "mlp": (50_000, 1.0),
    "cnn": (5_000, None),
}


@dataclass(frozen=True)
class Speed:
    model: str
    runtime: str
    gflop_per_image: float
    images_per_second: float
    best_images_per_second: float
    single_median_ms: float
    single_p99_ms: float


def measure(predictor: Predictor, images: np.ndarray, repeats: int, singles: int) -> tuple:
    """(median and best batch images/s, single median ms, single p99 ms), after warm-ups.

    The best batch is what the machine gives when nothing else runs; the median is typical.
    """
    batch = images[:1000]
    batch_seconds = timings(lambda: predictor.predict(batch), repeats)
    single_seconds = timings(lambda: predictor.predict(images[0]), singles)
    milliseconds = np.array(single_seconds) * 1000
    return (
        len(batch) / statistics.median(batch_seconds),
        len(batch) / min(batch_seconds),
        float(np.median(milliseconds)),
        float(np.percentile(milliseconds, 99)),
    )


def timings(call: Callable[[], object], repeats: int) -> list[float]:
    """Seconds of each of `repeats` calls, after three untimed warm-up calls."""
    for _ in range(3):
        call()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return seconds


def multiply_adds(model: object) -> int:
    """Multiply-adds per image of the Dense and Conv2D layers, which are nearly all the work."""
    total = 0
    for layer in model.layers:  # type: ignore[attr-defined]
        kind = type(layer).__name__
        if kind == "Dense":
            total += int(np.prod(layer.kernel.shape))
        elif kind == "Conv2D":
            height, width = layer.output.shape[1:3]
            total += height * width * int(np.prod(layer.kernel.shape))
    return total


def bench_model(name: str, images: np.ndarray, args: argparse.Namespace) -> list[Speed]:
    from digitlab.models import build_model

    model = build_model(name)
    model.predict_on_batch(images[:1].astype(np.float32))  # Keras exports only called models
    gflop = 2 * multiply_adds(model) / 1e9
    print(f"{name}: {gflop * 1e3:.1f} MFLOP per image", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        onnx_path = Path(folder) / f"{name}.onnx"
        model.export(str(onnx_path), format="onnx", verbose=False)
        int8_path = Path(folder) / f"{name}.int8.onnx"
        quantize_onnx(onnx_path, int8_path, calibration_images())
        predictors = {
            "Keras": Predictor.from_keras(model),
            "ONNX Runtime": Predictor.load(onnx_path, threads=args.threads),
            "ONNX Runtime int8": Predictor.load(int8_path, threads=args.threads),
        }
        return [
            Speed(name, runtime, gflop, *measure(predictor, images, args.repeats, args.singles))
            for runtime, predictor in predictors.items()
        ]


def verdict(speed: Speed) -> str:
    if not speed.runtime.startswith("ONNX Runtime") or speed.model not in TARGETS:
        return ""
    min_rate, max_median = TARGETS[speed.model]
    checks = [f"{min_rate:,} img/s: {'met' if speed.images_per_second >= min_rate else 'MISSED'}"]
    if max_median is not None:
        met = speed.single_median_ms < max_median
        checks.append(f"< {max_median:g} ms: {'met' if met else 'MISSED'}")
    return "; ".join(checks)


def table(speeds: list[Speed]) -> str:
    headers = [
        "model",
        "MFLOP per image",
        "runtime",
        "batches of 1,000: median (images/s)",
        "best (images/s)",
        "best (GFLOP/s)",
        "single image median (ms)",
        "single image p99 (ms)",
        "target (on the median)",
    ]
    rows = [
        [
            s.model,
            f"{s.gflop_per_image * 1e3:.1f}",
            s.runtime,
            f"{s.images_per_second:,.0f}",
            f"{s.best_images_per_second:,.0f}",
            f"{s.best_images_per_second * s.gflop_per_image:.0f}",
            f"{s.single_median_ms:.3f}",
            f"{s.single_p99_ms:.3f}",
            verdict(s),
        ]
        for s in speeds
    ]
    return markdown_table(headers, rows, right={1, 3, 4, 5, 6, 7})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=["mlp", "cnn"],
        help="registered model names (default: mlp cnn)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=20,
        help="timed 1,000-image batches per runtime (default: 20)",
    )
    parser.add_argument(
        "--singles",
        type=int,
        default=500,
        help="timed single-image predictions per runtime (default: 500)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="ONNX Runtime intra-op threads (default: its own choice)",
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print only; leave docs/results.md alone"
    )
    args = parser.parse_args()

    _, (x_test, _) = load_mnist()
    load_before = os.getloadavg()[0]
    speeds = [speed for name in args.models for speed in bench_model(name, x_test, args)]
    text = table(speeds)
    context = (
        f"Measured by `.venv/bin/python bench/inference.py` on {os.cpu_count()} CPU cores "
        f"(load average {load_before:.1f} when it started; other work on the machine slows "
        f"these figures), ONNX Runtime threads: {args.threads or 'default'}. Weights are "
        "untrained: speed does not depend on them."
    )
    publish("Inference speed", context, text, write=not args.no_write)


if __name__ == "__main__":
    main()
