"""Train the reference run and measure it: test accuracy and wall-clock seconds.

Default: the reference `mlp` (30 epochs, batch 64, augmentation; `TrainConfig()`'s
defaults). Any setting can be changed as in `digitlab train --set` (e.g. to reproduce
the shipped `cnn`: --set model=cnn --set epochs=15 --set batch_size=128).
Prints the training progress, then one summary line and a JSON line with the figures:
test accuracy and loss (the best-by-validation model on the 10,000 MNIST test images),
seconds to train and in total, the process's CPU seconds, and the machine's load average.
On a shared machine wall-clock seconds grow with the load; CPU seconds much less so: on an
otherwise idle machine with C cores, wall-clock is about CPU seconds / C plus start-up.

    .venv/bin/python bench/train_reference.py [--out RUN_DIR] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from digitlab.evaluation import evaluate_model_file  # noqa: E402
from digitlab.training.config import make_config, parse_override  # noqa: E402
from digitlab.training.loop import default_run_dir, train  # noqa: E402
from publishing import cpu_seconds  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="new run folder (default: runs/<model>-<date>-<time>)")
    parser.add_argument("--config", help="TOML file of settings (default: none)")
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting, as `digitlab train --set`",
    )
    parser.add_argument("--verbose", type=int, default=1, help="Keras verbosity (default: 1)")
    args = parser.parse_args()

    started = time.perf_counter()
    load_before = os.getloadavg()
    config = make_config(args.config, dict(parse_override(text) for text in args.settings))
    run_dir = args.out or default_run_dir(config)
    result = train(config, out=run_dir, verbose=args.verbose)
    trained = time.perf_counter()
    evaluation = evaluate_model_file(result.model_path, dataset=config.dataset)
    finished = time.perf_counter()

    figures = {
        "model": config.model,
        "epochs": result.epochs_completed,
        "batch_size": config.batch_size,
        "augment": config.augment,
        "test_accuracy": round(evaluation.accuracy, 4),
        "test_loss": round(evaluation.loss, 4),
        "best_val_accuracy": round(result.best_val_accuracy, 4),
        "best_epoch": result.best_epoch,
        "train_seconds": round(result.train_seconds, 1),
        "wall_seconds_to_trained": round(trained - started, 1),
        "evaluate_seconds": round(finished - trained, 1),
        "wall_seconds": round(finished - started, 1),
        "cpu_seconds": round(cpu_seconds(), 1),
        "cores": os.cpu_count(),
        "load_average_before": [round(value, 2) for value in load_before],
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
        "run_dir": str(result.run_dir),
    }
    print(
        f"{config.model}: test accuracy {evaluation.accuracy:.2%}, "
        f"{figures['wall_seconds']:.0f} s wall-clock ({figures['train_seconds']:.0f} s in epochs, "
        f"{figures['cpu_seconds']:.0f} CPU seconds on {figures['cores']} cores), "
        f"load average {figures['load_average_before'][0]} -> {figures['load_average_after'][0]}"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
