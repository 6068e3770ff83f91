"""Train the reader's part scorer and measure how well it tells whole digits from the other
candidates of the cut search (issue 17).

Candidate parts, and the pieces the reader does not cut seen alone, come from numbers
composed of MNIST *training* digits (the first 54,000 to train, the last 6,000 to watch the
epochs), in every gap kind and look (`digitlab.training.part_scorer`). The figures are on
parts of numbers of MNIST *test* digits, which nothing was fitted on: the AUROC of "one
whole digit" against every other candidate, for the part scorer and for what the reader
weighed candidates by before it (the classifier's top probability times its digit score),
and the share of parts whose class the part scorer gets right. `--out` writes the trained
scorer as ONNX (the shipped one is src/digitlab/pretrained/part_scorer.onnx).

    .venv/bin/python bench/part_scorer.py [--numbers 12000] [--epochs 6] [--seed 0] [--out F]
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import numpy as np
from rich.progress import Progress
from sklearn.metrics import roc_auc_score

from digitlab.data.sources import load_mnist
from digitlab.inference.predictor import Predictor
from digitlab.reading.part_scorer import NOT_WHOLE
from digitlab.training.part_scorer import (
    PartSet,
    export_part_scorer,
    part_set,
    train_part_scorer,
)
from publishing import machine_label

WATCHED = 6_000
"""MNIST training digits kept apart to watch the epochs."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numbers", type=int, default=12_000, help="training numbers")
    parser.add_argument("--epochs", type=int, default=6, help="epochs (default: 6)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--out", type=Path, help="write the trained scorer here (ONNX)")
    args = parser.parse_args()
    if args.numbers < 8 or args.epochs < 1:
        parser.error("--numbers must be at least 8 and --epochs at least 1")
    (x_train, y_train), (x_test, y_test) = load_mnist()
    predictor = Predictor.load(threads=1)
    rng = np.random.default_rng(args.seed)
    cut = len(x_train) - WATCHED
    sets = {
        "training": (x_train[:cut], y_train[:cut], args.numbers),
        "watching": (x_train[cut:], y_train[cut:], max(1, args.numbers // 8)),
        "test": (x_test, y_test, max(1, args.numbers // 8)),
    }
    parts: dict[str, PartSet] = {}
    with Progress() as progress:
        for name, (digits, labels, numbers) in sets.items():
            task = progress.add_task(f"{name} numbers", total=numbers)
            parts[name] = part_set(
                digits,
                labels,
                numbers,
                rng,
                predictor,
                functools.partial(progress.advance, task),
                judged_alone=name == "test",
            )
    start = time.perf_counter()
    model = train_part_scorer(parts["training"], parts["watching"], args.epochs, args.seed)
    print(f"trained on {len(parts['training'])} parts in {time.perf_counter() - start:.0f} s")
    if args.out is not None:
        difference = export_part_scorer(model, args.out, parts["watching"])
        print(f"wrote {args.out} (ONNX within {difference:.1g} of Keras)")
    _report(model, parts["test"])


def _report(model: object, test: PartSet) -> None:
    """Print how well the scorer and the classifier alone tell whole digits from other
    parts, and how often the scorer's class is right."""
    views = test.views.astype(np.float32)
    probabilities = np.asarray(model.predict(views, verbose=0))  # type: ignore[attr-defined]
    whole = test.classes != NOT_WHOLE
    scorer = roc_auc_score(whole, 1 - probabilities[:, NOT_WHOLE])
    assert test.alone is not None
    print(f"machine: {machine_label()}")
    print(f"held-out parts (MNIST test digits): {len(test)}, {whole.mean():.1%} whole digits")
    print(f"AUROC whole vs not: part scorer {scorer:.4f}, ", end="")
    print(
        f"classifier alone (top probability x digit score) {roc_auc_score(whole, test.alone):.4f}"
    )
    print(f"the part scorer's class right: {np.mean(probabilities.argmax(1) == test.classes):.1%}")


if __name__ == "__main__":
    main()
