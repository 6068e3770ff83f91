"""Not a digit: how well each score tells digits from non-digits, by kind, side by side.

Scores compared: four read from the classifier's penultimate features (`digitlab.not_digit`):
max-softmax (the baseline), energy, Mahalanobis distance (class means and shared covariance
of MNIST training digits) and a frozen-feature head (outlier exposure: a small head trained
on digits against the TRAINING kinds of non-digits); and the convolutional branch with its
own features (`not_digit.branch`): the model's own column 10 when it has one (11 outputs),
or, with `--extend-to`, a branch trained here (a few minutes) and attached to the model.
Every score's threshold is chosen the same way, on validation digits only (at most 0.5% of
MNIST validation digits and 1% of each styled or looked set of them flagged); the figures
are on sets never used to fit or choose anything: MNIST test, MNIST test digits in every
style and with pen gaps, the UCI 8x8 digits (other writers, evaluation-only), and the
HELD-OUT non-digits, drawn afresh. "Unseen kinds" are those no score was trained on:
the unseen halves of the letters and symbols, new shapes and scrawls; the trained halves are
reported apart and left out of the AUROC.

Images are cached under /tmp by a checksum of the code that makes them, features by the
model's checksum too, so a rerun takes seconds.

    .venv/bin/python bench/not_digit.py                         # the shipped model
    .venv/bin/python bench/not_digit.py --model CNN.keras --extend-to OUT.keras
                                                                # train and attach a branch
    .venv/bin/python bench/not_digit.py --model CNN.keras --extend-to OUT.keras --members 3
                                                                # the mean of three (shipped)
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

import digitlab
from digitlab.atomic import atomic_path
from digitlab.data.sources import load_mnist
from digitlab.inference.digit_score import (
    DEFAULT_NOT_DIGIT_THRESHOLD,
    NOT_DIGIT_OUTPUTS,
    split_outputs,
)
from digitlab.inference.modelfile import load_keras_model
from digitlab.inference.pretrained import pretrained_model_path
from digitlab.not_digit.branch import (
    BranchData,
    attach_branch,
    branch_logits,
    combine_branches,
    train_branch,
)
from digitlab.not_digit.datasets import ImageSets, report_sets, training_sets, validation_sets
from digitlab.not_digit.heads import fit_head
from digitlab.not_digit.non_digits import UNSEEN_KINDS, load_fashion_mnist
from digitlab.not_digit.scores import (
    Mahalanobis,
    energy,
    penultimate_features,
    threshold_for,
)
from digitlab.tables import markdown_table
from publishing import publish

MNIST_VALIDATION_SHARE = 0.005
VALIDATION_SHARE = 0.01
"""The most each validation set may have flagged (MNIST validation digits, and each styled
or looked set of them): the rule every threshold follows."""

Features = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
"""set name -> (features, logits, model outputs)."""

Score = Callable[[str, str], np.ndarray]
"""(role, set name) -> the score of every image of that set, higher = more digit-like."""

BRANCH = "conv branch"


SCORING_MODULES = {"branch.py", "heads.py", "scores.py"}
"""The not-a-digit package's modules that score images and make none (no image-making
module imports them): editing a branch does not make the sets be drawn again."""


def _generators_digest() -> str:
    """A digest of the code that makes the image sets (the not-a-digit package but for its
    `SCORING_MODULES`, the styles and `to_mnist`'s images package): cached sets made by
    other code are never reused."""
    package = Path(digitlab.__file__).parent
    sources = sorted(
        [
            *(
                source
                for source in (package / "not_digit").glob("*.py")
                if source.name not in SCORING_MODULES
            ),
            package / "styles.py",
            *(package / "images").glob("*.py"),
        ]
    )
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


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


def _feature_methods(features: dict[str, Features], training: ImageSets) -> dict[str, Score]:
    """The scores read from the classifier's penultimate features, fitted on training sets."""
    train = features["training"]
    digit_rows = [row[0] for name, row in train.items() if name in training.digits]
    other_rows = [row[0] for name, row in train.items() if name not in training.digits]
    head = fit_head(np.concatenate(digit_rows), np.concatenate(other_rows))
    (_, y_train), _ = load_mnist()
    mahalanobis = Mahalanobis.fit(train["mnist train"][0], y_train[: len(train["mnist train"][0])])
    return {
        "max-softmax": lambda role, name: split_outputs(features[role][name][2])[0].max(axis=1),
        "energy": lambda role, name: energy(features[role][name][1]),
        "Mahalanobis": lambda role, name: mahalanobis.score(features[role][name][0]),
        "frozen-feature head": lambda role, name: head.logit(features[role][name][0]),
    }


def _trained_branch(
    model: object,
    roles: dict[str, ImageSets],
    features: dict[str, Features],
    seed: int,
    epochs: int,
    members: int,
) -> tuple[object, Score]:
    """A branch trained on MNIST training digits, the styled and looked training digits and fresh
    training non-digits, with its logits on every validation and report set; with `members`
    above 1, that many trained alike (branch seeds `seed`, `seed` + 1, ...) and combined."""
    (x_train, y_train), _ = load_mnist()
    training = roles["training"]
    styled = np.concatenate(
        [v for k, v in training.images.items() if k.startswith(("styled ", "look "))]
    )
    data = BranchData(x_train[:50000], styled, load_fashion_mnist("train"), y_train[:50000])
    branches = [
        train_branch(
            model,  # type: ignore[arg-type]
            data,
            epochs=epochs,
            seed=seed + member,
            progress=lambda e, loss, m=member: print(f"member {m}, epoch {e}: {loss:.4f}"),
        )
        for member in range(members)
    ]
    branch = branches[0] if members == 1 else combine_branches(branches)
    logits = {
        (role, name): branch_logits(branch, images, features[role][name][0])
        for role in ("validation", "report")
        for name, images in roles[role].images.items()
    }
    return branch, lambda role, name: logits[role, name]


def _threshold(score: Score, fixed: float | None, validation_names: set[str]) -> float:
    """The highest threshold that keeps each validation set within its share, or `fixed`
    for a model whose own column already carries that threshold at 0.5."""
    if fixed is not None:
        return fixed
    names = sorted(validation_names)
    shares = [
        MNIST_VALIDATION_SHARE if name == "mnist validation" else VALIDATION_SHARE for name in names
    ]
    return threshold_for([score("validation", name) for name in names], shares)


def _measure(
    methods: dict[str, Score], fixed: dict[str, float], report: ImageSets, validation: ImageSets
) -> tuple[list[list[object]], list[list[object]], dict[str, float]]:
    """Per-method summary rows, per-set rows, and each method's threshold."""
    rows: dict[str, list[object]] = {
        name: [name, len(images)] for name, images in report.images.items()
    }
    summary, thresholds = [], {}
    for method, score in methods.items():
        threshold = thresholds[method] = _threshold(
            score, fixed.get(method), set(validation.images)
        )
        scores = {name: score("report", name) for name in report.images}
        for name, values in scores.items():
            rows[name].append(f"{np.mean(values < threshold):.1%}")
        digits = np.concatenate([scores[name] for name in report.digits])
        others = np.concatenate(
            [v for name, v in scores.items() if name not in report.digits and "trained" not in name]
        )
        unseen = np.concatenate([scores[name] for name in UNSEEN_KINDS])
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
                f"{np.mean(unseen < threshold):.1%}",
                f"{np.mean(others < threshold):.1%}",
                f"{np.mean(scores['mnist test'] < threshold):.2%}",
                f"{styled:.1%}",
                f"{threshold:.4g}",
            ]
        )
    return summary, list(rows.values()), thresholds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="model (default: the shipped one)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every set (default: 0)")
    parser.add_argument(
        "--extend-to", type=Path, default=None, help="train a branch, write the model with it here"
    )
    parser.add_argument("--epochs", type=int, default=30, help="branch epochs (default: 30)")
    parser.add_argument(
        "--members", type=int, default=1, help="branches trained and combined (default: 1)"
    )
    parser.add_argument("--no-write", action="store_true", help="do not update docs/results.md")
    args = parser.parse_args()
    if args.members < 1:
        raise SystemExit("--members must be 1 or more")
    model_path = args.model or pretrained_model_path()
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()[:16]
    images = f"images-{_generators_digest()}-{args.seed}"
    cache = Path(os.environ.get("TMPDIR", "/tmp")) / "digitlab-not-digit" / f"{digest}-{images}"
    images_cache = cache.parent / images
    cache.mkdir(parents=True, exist_ok=True)
    images_cache.mkdir(parents=True, exist_ok=True)
    model = load_keras_model(model_path)
    has_branch = model.outputs[0].shape[-1] == NOT_DIGIT_OUTPUTS

    roles = {
        "training": _cached(images_cache, "training", lambda: training_sets(args.seed)),
        "validation": _cached(images_cache, "validation", lambda: validation_sets(args.seed)),
        "report": _cached(images_cache, "report", lambda: report_sets(args.seed)),
    }
    features = {role: _features(model, sets, cache, role) for role, sets in roles.items()}
    methods = _feature_methods(features, roles["training"])
    fixed = {}
    branch = None
    if has_branch:
        methods[BRANCH] = lambda role, name: split_outputs(features[role][name][2])[1]
        fixed[BRANCH] = DEFAULT_NOT_DIGIT_THRESHOLD
    elif args.extend_to is not None:
        branch, methods[BRANCH] = _trained_branch(
            model, roles, features, args.seed, args.epochs, args.members
        )

    summary, rows, thresholds = _measure(methods, fixed, roles["report"], roles["validation"])
    by_kind = markdown_table(["set", "images", *methods], rows, right=range(1, len(methods) + 2))
    overall = markdown_table(
        [
            "method",
            "AUROC",
            "unseen kinds flagged",
            "non-digits flagged",
            "MNIST test flagged",
            "worst digit style flagged",
            "threshold",
        ],
        summary,
        right=range(1, 7),
    )
    context = (
        f"Model: {model_path.name}. Share of each held-out set flagged as not a digit, by method; "
        "thresholds chosen on validation digits only (<= 0.5% of MNIST validation, <= 1% of "
        "each styled and each looked set of validation digits flagged); the UCI digits are "
        "never trained or tuned on. Unseen kinds: the unseen halves of the letters and symbols, "
        "new shapes and scrawls, which no method was trained on; the trained halves of the "
        "letters and symbols are drawn afresh but were seen in training, and are left out of "
        "the AUROC and the non-digit share. Targets: >= 90% of letters, symbols, scribbles and "
        "shapes flagged, <= 1% of MNIST test and <= 2% of other styles, AUROC >= 0.98."
    )
    publish("Not a digit", context, f"{overall}\n\n{by_kind}", write=not args.no_write)
    if branch is not None and args.extend_to is not None:
        extended = attach_branch(model, branch, thresholds[BRANCH])  # type: ignore[arg-type]
        with atomic_path(args.extend_to) as staged:
            extended.save(staged)
        print(
            f"wrote {args.extend_to}: outputs {extended.outputs[0].shape}, "
            f"threshold {thresholds[BRANCH]:.4g}"
        )


if __name__ == "__main__":
    main()
