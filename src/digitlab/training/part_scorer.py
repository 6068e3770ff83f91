"""Training the part scorer (`reading.part_scorer`) on the cut search's own candidates.

Numbers of MNIST *training* digits are composed (every gap kind and look of
`number_images`) and read as the reader reads them, up to the cut search: every candidate
part of every blob that may be several digits, and every other piece alone (a narrow digit,
or a stroke broken off one: the reader asks whether such a piece is a stray), is viewed
with the ink around it (`part_view`) and labelled from the true digit boxes. A part is one
whole digit when its columns and one digit's columns cover at least `WHOLE` of each other
(a cut through an overlap of up to a fifth of a digit's width still leaves that) and it
holds under `HOLDS_ANOTHER` of any other digit's columns, and is labelled with that digit;
it is not one whole digit ("not whole", class 10) when they cover under `PART` of each
other, or when it holds that much of another digit (a thin 1 that overlaps a 2 adds few
columns to the 2's, but it is two digits); the parts in between are left out of training,
since either answer is defensible there.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from digitlab.errors import ExportError
from digitlab.images import decode, extract_ink, normalize_digit, read_header, to_grayscale
from digitlab.number_images import GAPS, LOOKS, ComposedNumber, compose_number
from digitlab.reading.number import cut_candidates
from digitlab.reading.part_scorer import NOT_WHOLE, PartScorer
from digitlab.reading.part_view import VIEW_COLUMNS, VIEW_ROWS, part_views
from digitlab.reading.segment import Piece

if TYPE_CHECKING:
    from digitlab.inference.predictor import Predictor

WHOLE = 0.8
"""A part and a digit covering at least this share of each other's columns: the digit."""

PART = 0.7
"""A part and every digit covering under this share of each other: not one whole digit."""

HOLDS_ANOTHER = 0.5
"""A part holding this share of the columns of a digit besides the one it covers most: not
one whole digit (neighbours overlap by at most a fifth of the narrower one's width)."""

LENGTHS = (2, 9)
"""Numbers of 2 to 8 digits."""


@dataclass(frozen=True)
class PartSet:
    """Views of candidate parts (N x VIEW_ROWS x VIEW_COLUMNS x 2, uint8), their classes
    (N,): the digit of a whole digit, `NOT_WHOLE` otherwise, and, when asked for, how
    surely the classifier alone took each part for a digit (N,): its top probability
    times its digit score, what the reader weighed candidates by before the part scorer
    (None when not asked for: training never needs it)."""

    views: np.ndarray
    classes: np.ndarray
    alone: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.classes)


def part_set(
    digits: np.ndarray,
    labels: np.ndarray,
    numbers: int,
    rng: np.random.Generator,
    predictor: Predictor,
    on_number: Callable[[], None] | None = None,
    judged_alone: bool = False,
) -> PartSet:
    """Candidate parts of `numbers` numbers composed from `digits` (with `labels`): random
    lengths, gap kinds and looks, read up to the cut search with `predictor` (which joins
    side-by-side pieces), so that the blobs are those the reader cuts. With `judged_alone`,
    `predictor` also judges each part alone (`PartSet.alone`)."""
    found = [
        (np.zeros((0, VIEW_ROWS, VIEW_COLUMNS, 2), np.uint8), np.zeros(0, np.int64), np.zeros(0))
    ]
    for _ in range(numbers):
        picked = rng.integers(0, len(digits), size=int(rng.integers(*LENGTHS)))
        gap = str(rng.choice(list(GAPS)))
        look = str(rng.choice(LOOKS))
        item = compose_number(digits[picked], labels[picked], rng, gap, look)
        found.extend(_number_parts(item, predictor, judged_alone))
        if on_number is not None:
            on_number()
    views, classes, alone = (np.concatenate(arrays) for arrays in zip(*found, strict=True))
    return PartSet(views, classes, alone if judged_alone else None)


def _number_parts(
    item: ComposedNumber, predictor: Predictor, judged_alone: bool
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """For each piece of `item` (`cut_candidates`): its labelled candidates' views (uint8),
    classes and, with `judged_alone`, the classifier's confidence times digit score for
    each (else zeros)."""
    gray = to_grayscale(decode(item.data, "number"), "number")
    ink = extract_ink(gray, "number")
    scale = gray.shape[1] / read_header(item.data, "number").width
    spans = [(box[0] * scale, box[2] * scale) for box in item.boxes]
    for blob, parts, height in cut_candidates(ink, predictor):
        kept = [
            (part, kind) for part in parts if (kind := _class(part, spans, item.number)) is not None
        ]
        if not kept:
            continue
        chosen = [part for part, _ in kept]
        alone = np.zeros(len(chosen))
        if judged_alone:
            said = predictor.predict(np.stack([normalize_digit(part.ink(ink)) for part in chosen]))
            alone = said.confidences * said.digit_scores
        yield (
            np.rint(part_views(ink, blob, chosen, height) * 255.0).astype(np.uint8),
            np.array([kind for _, kind in kept], np.int64),
            alone,
        )


def _class(part: Piece, spans: list[tuple[float, float]], number: str) -> int | None:
    """The part's class from the true digits' column spans (None: neither whole nor
    clearly not)."""
    shared = np.array(
        [max(0.0, min(part.right, right) - max(part.left, left)) for left, right in spans]
    )
    widths = np.array([right - left for left, right in spans])
    cover = shared / np.maximum(np.maximum(widths, part.width), 1e-6)
    best = int(np.argmax(cover))
    held = np.delete(shared / np.maximum(widths, 1e-6), best)
    if cover[best] < PART or (held >= HOLDS_ANOTHER).any():
        return NOT_WHOLE
    if cover[best] >= WHOLE:
        return int(number[best])
    return None


def build_part_scorer() -> object:
    """A small Keras network: a view (0..255) -> 11 probabilities (`NOT_WHOLE` last)."""
    import keras
    from keras import layers

    views = keras.Input((VIEW_ROWS, VIEW_COLUMNS, 2), name="views")
    x = layers.Rescaling(1 / 255)(views)
    for filters in (16, 32):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.3)(x)
    probabilities = layers.Dense(NOT_WHOLE + 1, activation="softmax", name="probabilities")(x)
    return keras.Model(views, probabilities, name="part_scorer")


def train_part_scorer(
    train: PartSet, validation: PartSet, epochs: int = 6, seed: int = 0, verbose: int = 2
) -> object:
    """A part scorer trained on `train` (Adam, batch 256, the learning rate falling by 40% an
    epoch), `validation` reported after each epoch."""
    import keras

    keras.utils.set_random_seed(seed)
    model = build_part_scorer()
    model.compile(  # type: ignore[attr-defined]
        keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(  # type: ignore[attr-defined]
        train.views.astype(np.float32),
        train.classes,
        batch_size=256,
        epochs=epochs,
        validation_data=(validation.views.astype(np.float32), validation.classes),
        callbacks=[keras.callbacks.LearningRateScheduler(lambda epoch: 1e-3 * 0.6**epoch)],
        verbose=verbose,
    )
    return model


def export_part_scorer(model: object, out: Path, check: PartSet) -> float:
    """Write `model` to ONNX at `out` (atomically) and return the largest difference between
    its probabilities under ONNX Runtime and Keras's on `check`; raises `ExportError`, with
    nothing written, when that exceeds `PARITY_TOLERANCE`."""
    from digitlab.atomic import atomic_path
    from digitlab.inference.export import PARITY_TOLERANCE

    pixels = check.views.astype(np.float32)
    reference = np.asarray(model.predict(pixels, verbose=0))  # type: ignore[attr-defined]
    with atomic_path(out) as staged:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            model.export(str(staged), format="onnx", verbose=False)  # type: ignore[attr-defined]
        exported = PartScorer(staged).probabilities(check.views.astype(np.float32) / 255)
        difference = float(np.abs(exported - reference).max())
        if difference > PARITY_TOLERANCE:
            raise ExportError(f"{out}: the ONNX part scorer differs from Keras by {difference:.2g}")
    return difference
