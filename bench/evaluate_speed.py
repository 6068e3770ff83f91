"""How long `digitlab.evaluation` takes on the 10,000 MNIST test images (target: under 3 s).

Times a registered model (default: the reference `mlp`; its weights do not change the
time) or a saved model file, metrics only and with the four report files written.
Prints the median of three runs of each, in seconds.

    .venv/bin/python bench/evaluate_speed.py [--model-name mlp|cnn|resnet | --model FILE.keras]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from digitlab.data.sources import load_mnist  # noqa: E402
from digitlab.evaluation import DEFAULT_BATCH_SIZE, evaluate  # noqa: E402
from digitlab.inference.modelfile import load_keras_model  # noqa: E402
from digitlab.models import build_model, list_models  # noqa: E402

REPEATS = 3


def median_seconds(run) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-name",
        default="mlp",
        choices=list_models(),
        help="a registered model, untrained (default: mlp)",
    )
    parser.add_argument("--model", help="a saved .keras model instead of --model-name")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"prediction batch size (default: {DEFAULT_BATCH_SIZE})",
    )
    args = parser.parse_args()

    _, (x_test, y_test) = load_mnist()
    model = load_keras_model(args.model) if args.model else build_model(args.model_name)
    print(
        f"model: {args.model or model.name} ({model.count_params():,} parameters), "
        f"{len(x_test)} test images, batch size {args.batch_size}"
    )
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
