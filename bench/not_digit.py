"""Not a digit: how well each score tells digits from non-digits, by kind, side by side.

Scores compared, each read from the model's penultimate features (`digitlab.not_digit`):
max-softmax (the baseline), energy, Mahalanobis distance (class means and shared covariance
of MNIST training digits) and outlier exposure (a small head trained on digits against the
TRAINING kinds of non-digits). A model that already carries a head (11 outputs) adds its own
column 10 as "shipped head". Every score's threshold is chosen the same way, on validation
digits only (at most 0.5% of MNIST validation digits and 1% of styled ones flagged); the
figures are on sets never used to fit or choose anything: MNIST test, MNIST test digits in
every style, the UCI 8x8 digits, and the HELD-OUT kinds of non-digits (letters, symbols,
new shapes and scrawls were never trained on).

Images and features are cached under /tmp by model checksum, so a rerun takes seconds.

    .venv/bin/python bench/not_digit.py                         # the shipped model
    .venv/bin/python bench/not_digit.py --extend-to OUT.keras   # also write the model + head
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from digitlab.atomic import atomic_path
from digitlab.data.sources import load_mnist
from digitlab.inference.modelfile import load_keras_model
from digitlab.inference.pretrained import pretrained_model_path
from digitlab.not_digit.datasets import ImageSets, report_sets, training_sets, validation_sets
from digitlab.not_digit.heads import DigitHead, attach_head, fit_head
from digitlab.not_digit.scores import (
    Mahalanobis,
    energy,
    penultimate_features,
    threshold_for,
)
from digitlab.tables import markdown_table
from publishing import publish

VALIDATION_SHARES = {"mnist validation": 0.005, "styled validation": 0.01}
"""The most each validation set may have flagged: the rule every threshold follows."""

Features = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
"""set name -> (features, logits, model outputs)."""


def _cached(cache: Path, name: str, make: Callable[[], ImageSets]) -> ImageSets:
    path = cache / f"{name}.npz"
    if not path.is_file():
        sets = make()
        arrays = {
            f"{'d' if key in sets.digits else 'n'}:{key}": v for key, v in sets.images.items()
        }
        with atomic_path(path) as staged, open(staged, "wb") as handle:
            np.savez(handle, **arrays)
    with np.load(path) as stored:
        result = ImageSets()
        for key in stored.files:
            role, _, name_ = key.partition(":")
            result.add(name_, stored[key], is_digit=role == "d")
        return result


def _features(model: object, sets: ImageSets, cache: Path, role: str) -> Features:
    path = cache / f"{role}-features.npz"
    if not path.is_file():
        arrays = {}
        for name, images in sets.images.items():
            features, logits = penultimate_features(model, images)  # type: ignore[arg-type]
            outputs = np.asarray(model.predict(images, batch_size=512, verbose=0))  # type: ignore[attr-defined]
            arrays |= {f"f:{name}": features, f"l:{name}": logits, f"o:{name}": outputs}
        with atomic_path(path) as staged, open(staged, "wb") as handle:
            np.savez(handle, **arrays)
    with np.load(path) as stored:
        return {
            name: (stored[f"f:{name}"], stored[f"l:{name}"], stored[f"o:{name}"])
            for name in sets.images
        }


def _methods(
    training: Features,
    training_sets_: ImageSets,
    labels: np.ndarray,
    head: DigitHead,
    shipped: bool,
) -> dict[str, Callable[[tuple[np.ndarray, np.ndarray, np.ndarray]], np.ndarray]]:
    mahalanobis = Mahalanobis.fit(training["mnist train"][0], labels)
    methods: dict[str, Callable[[tuple[np.ndarray, np.ndarray, np.ndarray]], np.ndarray]] = {
        "max-softmax": lambda row: np.asarray(row[2][:, :10].max(axis=1)),
        "energy": lambda row: energy(row[1]),
        "Mahalanobis": lambda row: mahalanobis.score(row[0]),
        "outlier exposure": lambda row: head.logit(row[0]),
    }
    if shipped:
        methods["shipped head"] = lambda row: np.asarray(row[2][:, 10])
    return methods


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="model (default: the shipped one)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every set (default: 0)")
    parser.add_argument(
        "--extend-to", type=Path, default=None, help="write the model with the chosen head here"
    )
    parser.add_argument("--no-write", action="store_true", help="do not update docs/results.md")
    args = parser.parse_args()
    model_path = args.model or pretrained_model_path()
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("TMPDIR", "/tmp")) / "digitlab-not-digit" / f"{digest}-{args.seed}"
    images_cache = cache.parent / f"images-{args.seed}"
    cache.mkdir(parents=True, exist_ok=True)
    images_cache.mkdir(parents=True, exist_ok=True)
    model = load_keras_model(model_path)
    shipped = model.outputs[0].shape[-1] == 11

    roles = {
        "training": _cached(images_cache, "training", lambda: training_sets(args.seed)),
        "validation": _cached(images_cache, "validation", lambda: validation_sets(args.seed)),
        "report": _cached(images_cache, "report", lambda: report_sets(args.seed)),
    }
    features = {role: _features(model, sets, cache, role) for role, sets in roles.items()}
    training = features["training"]
    digit_rows = [row[0] for name, row in training.items() if name in roles["training"].digits]
    other_rows = [row[0] for name, row in training.items() if name not in roles["training"].digits]
    head = fit_head(np.concatenate(digit_rows), np.concatenate(other_rows), seed=args.seed)
    (_, y_train), _ = load_mnist()
    labels = y_train[: len(training["mnist train"][0])]
    methods = _methods(training, roles["training"], labels, head, shipped)

    report = roles["report"]
    rows: dict[str, list[object]] = {
        name: [name, len(images)] for name, images in report.images.items()
    }
    summary = []
    for method, score in methods.items():
        valid = [score(features["validation"][name]) for name in VALIDATION_SHARES]
        threshold = (
            0.5
            if method == "shipped head"
            else threshold_for(valid, list(VALIDATION_SHARES.values()))
        )
        if method == "outlier exposure":
            head = head.with_threshold(threshold)
        scores = {name: score(features["report"][name]) for name in report.images}
        for name, values in scores.items():
            rows[name].append(f"{np.mean(values < threshold):.1%}")
        digits = np.concatenate([scores[name] for name in report.digits])
        others = np.concatenate([v for name, v in scores.items() if name not in report.digits])
        auroc = roc_auc_score(
            np.r_[np.ones(len(digits)), np.zeros(len(others))], np.r_[digits, others]
        )
        styled = max(
            np.mean(scores[name] < threshold) for name in report.digits if name != "mnist test"
        )
        summary.append(
            [
                method,
                f"{auroc:.4f}",
                f"{np.mean(others < threshold):.1%}",
                f"{np.mean(scores['mnist test'] < threshold):.2%}",
                f"{styled:.1%}",
                f"{threshold:.4g}",
            ]
        )
    by_kind = markdown_table(
        ["set", "images", *methods], list(rows.values()), right=range(1, len(methods) + 2)
    )
    overall = markdown_table(
        [
            "method",
            "AUROC",
            "non-digits flagged",
            "MNIST test flagged",
            "worst digit style flagged",
            "threshold",
        ],
        summary,
        right=range(1, 6),
    )
    context = (
        f"Model: {model_path.name}. Share of each held-out set flagged as not a digit, by method; "
        "thresholds chosen on validation digits only. Targets: >= 90% of letters, symbols, "
        "scribbles and shapes flagged, <= 1% of MNIST test and <= 2% of other styles, "
        "AUROC >= 0.98."
    )
    publish("Not a digit", context, f"{overall}\n\n{by_kind}", write=not args.no_write)
    if args.extend_to is not None:
        extended = attach_head(model, head)
        with atomic_path(args.extend_to) as staged:
            extended.save(staged)
        print(
            f"wrote {args.extend_to}: outputs {extended.outputs[0].shape}, "
            f"threshold {head.threshold:.4g}"
        )


if __name__ == "__main__":
    main()
