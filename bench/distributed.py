"""Data-parallel training with 1 and 2 local processes (JAX backend): throughput and accuracy.

Trains the same run twice with the same global batch size and seed: once as one JAX
process (`KERAS_BACKEND=jax digitlab train`), once as `digitlab train --local-processes 2`.
Prints, per run, the seconds `fit` took and the training images per second over all
epochs (both with the first epoch's compilation included), the test accuracy of the run's
model on the 10,000 MNIST test images, and the load average (the machine may be shared);
then the accuracy difference.

    .venv/bin/python bench/distributed.py [--limit 6000] [--epochs 2] [--set KEY=VALUE ...]
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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from digitlab.evaluation import evaluate_model_file  # noqa: E402
from digitlab.training.run_folder import RunFolder  # noqa: E402


def run(processes: int, run_dir: Path, flags: list[str]) -> dict[str, float]:
    """Train into `run_dir` with `processes` local processes; return the measured figures."""
    command = [sys.executable, "-m", "digitlab", "train", "--out", str(run_dir), *flags]
    if processes > 1:
        command += ["--local-processes", str(processes)]
    started = time.perf_counter()
    subprocess.run(
        command, env={**os.environ, "KERAS_BACKEND": "jax"}, check=True, stdout=subprocess.DEVNULL
    )
    wall = time.perf_counter() - started
    folder = RunFolder(run_dir)
    summary = folder.read_summary()
    config = folder.read_config()
    trained_images = round(config.limit * (1 - config.val_fraction)) * config.epochs
    evaluation = evaluate_model_file(folder.model)
    return {
        "processes": processes,
        "wall_seconds": round(wall, 1),
        "fit_seconds": summary["train_seconds"],
        "images_per_second": round(trained_images / summary["train_seconds"], 1),
        "test_accuracy": round(evaluation.accuracy, 4),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=6000, help="training images (default 6000)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs (default: 2)")
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting, as `digitlab train --set`",
    )
    args = parser.parse_args()
    flags = ["--limit", str(args.limit), "--epochs", str(args.epochs)]
    flags += [item for text in args.settings for item in ("--set", text)]
    print(f"load average before: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="digitlab-bench-") as scratch:
        results = [run(processes, Path(scratch) / f"p{processes}", flags) for processes in (1, 2)]
    for result in results:
        print(json.dumps(result), flush=True)
    difference = abs(results[0]["test_accuracy"] - results[1]["test_accuracy"])
    print(f"test accuracy difference, 1 vs 2 processes: {difference * 100:.2f} percentage points")


if __name__ == "__main__":
    main()
