"""Teach the shipped model the continental 1 with a head beside its classifier.

The shipped classifier reads a 1 with a flag as 7 (docs/reading.md). Teaching the
classifier itself read UCI's digits of outside writers worse, so a small head
(`digitlab.training.continental_head`) learns to tell a 1 with a flag from a 7, and moves
the probability of 7 to 1 as far as it is sure. It learns from the shipped run's training
split: its 1s, with flags drawn afresh each epoch (`digitlab.training.continental`), and
its 7s, both also in every generic look of `not_digit.looks` and every style of
`digitlab.styles`. Its threshold is chosen on the validation split alone
(`choose_threshold`); the drawn digits of `bench/drawn_digits.py`, the MNIST test set and
UCI's 1,797 digits of writers outside MNIST are printed before and after, never used to
choose. The not-a-digit branch is put back unchanged.

    .venv/bin/python bench/continental_ones.py [--model M.keras] [--out OUT.keras [--force]]

Without `--out` nothing is written. The shipped model was made by this script from the
model before it (its head is taken off first, so a rerun starts from the same classifier):

    .venv/bin/python bench/continental_ones.py --force \
        --out src/digitlab/pretrained/digits_cnn.keras
    digitlab export src/digitlab/pretrained/digits_cnn.keras --format onnx \
        --out src/digitlab/pretrained/digits_cnn.onnx --force
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import keras
import numpy as np
from sklearn.datasets import load_digits

from digitlab.atomic import atomic_path
from digitlab.data.sources import load_mnist
from digitlab.inference.calibration import expected_calibration_error
from digitlab.inference.modelfile import load_keras_model
from digitlab.inference.pretrained import pretrained_model_path
from digitlab.not_digit.branch import BRANCH_NAME, attach_branch, without_branch
from digitlab.not_digit.datasets import styled_digits, uci_digits
from digitlab.not_digit.looks import every_look
from digitlab.training.continental import flagged_ones
from digitlab.training.continental_head import (
    HeadData,
    attach_head,
    choose_threshold,
    head_logits,
    train_head,
    without_head,
)
from digitlab.training.loop import split_train_validation
from drawn_digits import SKELETONS, draw_skeleton

LOOKED = 2000
"""Flagged 1s and 7s of the training split put in every generic look, and half as many in
every style of `digitlab.styles`."""

DRAWN = ((1, "flag"), (1, "bar"), (1, "flag and base"), (7, "plain"), (7, "barred"))
"""The drawn skeletons printed: the flagged 1, and what it must not take."""


def _print(name: str, model: keras.Model, sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Print `model`'s accuracy on every set (images, classes), and its test ECE."""
    figures = []
    for set_name, (images, labels) in sets.items():
        outputs = model.predict(images, batch_size=1000, verbose=0)[:, :10]
        figures.append(f"{set_name} {np.mean(outputs.argmax(axis=1) == labels):.2%}")
        if set_name == "MNIST test":
            figures.append(f"ECE {expected_calibration_error(outputs, labels):.2%}")
    print(f"{name}: " + ", ".join(figures), flush=True)


def _looked(digits: np.ndarray, rng: np.random.Generator, seed: int) -> np.ndarray:
    """`LOOKED` of `digits` in every generic look, and half as many in every style."""
    picked = digits[rng.choice(len(digits), LOOKED, replace=False)]
    styled = styled_digits(picked[: LOOKED // 2], seed)
    return np.concatenate([every_look(picked, seed), *styled.values()])


def _head_data(x_train: np.ndarray, y_train: np.ndarray, seed: int) -> HeadData:
    rng = np.random.default_rng(seed)
    ones, sevens = x_train[y_train == 1], x_train[y_train == 7]
    flags = flagged_ones(ones, np.ones(len(ones), int), seed)
    return HeadData(
        ones=ones,
        sevens=sevens,
        looked_flags=_looked(flags, rng, seed),
        looked_sevens=_looked(sevens, rng, seed + 1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="default: the shipped model")
    parser.add_argument("--out", type=Path, default=None, help="write the model with the head here")
    parser.add_argument("--seed", type=int, default=0, help="the shipped run's split seed")
    parser.add_argument("--epochs", type=int, default=10, help="head epochs (default: 10)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    args = parser.parse_args()
    if args.out is not None and args.out.exists() and not args.force:
        parser.error(f"{args.out} exists; pass --force to replace it")
    started = time.perf_counter()
    model = load_keras_model(args.model or pretrained_model_path())
    classifier = without_head(without_branch(model))
    (x, y), test = load_mnist()
    x_train, y_train, x_val, y_val = split_train_validation(x, y, 0.1, args.seed)
    rng = np.random.default_rng(args.seed)
    sets = {"validation": (x_val, y_val), "MNIST test": test}
    sets["UCI digits"] = (uci_digits(), load_digits().target)
    for digit, skeleton in DRAWN:
        sets[f"drawn {digit} {skeleton}"] = (
            draw_skeleton(SKELETONS[digit][skeleton], 500, rng),
            np.full(500, digit),
        )
    _print("classifier alone", classifier, sets)
    data = _head_data(x_train, y_train, args.seed)
    print(f"data ready: {time.perf_counter() - started:.0f} s", flush=True)
    head = train_head(
        classifier,
        data,
        lambda ones, epoch: flagged_ones(ones, np.ones(len(ones), int), args.seed + 1 + epoch),
        epochs=args.epochs,
        seed=args.seed,
    )
    threshold = choose_threshold(
        classifier.predict(x_val, batch_size=1000, verbose=0),
        head_logits(head, classifier, x_val),
        y_val,
    )
    print(f"head trained: {time.perf_counter() - started:.0f} s; threshold {threshold:g}")
    extended = attach_head(classifier, head, threshold)
    if any(layer.name == BRANCH_NAME for layer in model.layers):
        extended = attach_branch(extended, model.get_layer(BRANCH_NAME), 0.0)
    _print("with the head", extended, sets)
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.out is not None:
        with atomic_path(args.out) as staged:
            extended.save(staged)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
