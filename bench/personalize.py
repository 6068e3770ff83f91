"""Teach the shipped model simulated writers' habits and measure what it learns and forgets.

For each writer of `digitlab.writers` (slashed zeros, flagged 1s, crossed 7s, open 4s,
some of them together, and an ordinary hand) and each number of samples per digit, the
writer's digits are written as PNG files, `digitlab.finetune` teaches the shipped model
from all of them, and the writer's accuracy is measured before and after on other digits
of the same hand (30 per digit, drawn from other MNIST digits with other strokes), read
through `to_mnist` as `digitlab predict` reads them. MNIST test accuracy comes from
`finetune` itself. Writers are built from MNIST training digits 50,000-59,999 (teaching
from the first half, scoring on the second), so the MNIST test set is never trained on.

Fine-tuning's method and settings were chosen on the writers in `writers.TUNED_ON`; the
table marks them, and the others are a check on hands it was not tuned to.

Seconds are the whole `finetune` call (reading, scoring, training, saving, ONNX export);
CPU seconds beside them, as the machine may be shared. `--jobs N` measures N rows at once
(each in its own process), which makes the seconds of each longer but the bench shorter.

    .venv/bin/python bench/personalize.py [--writers W ...] [--samples N ...] [--jobs N]
        [--no-write]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from digitlab.data.sources import load_mnist  # noqa: E402
from digitlab.inference.predictor import FilePrediction, Predictor, collect_files  # noqa: E402
from digitlab.inference.pretrained import pretrained_model_path  # noqa: E402
from digitlab.tables import markdown_table  # noqa: E402
from digitlab.training.finetune import finetune  # noqa: E402
from digitlab.writers import TUNED_ON, WRITERS, write_writer  # noqa: E402
from publishing import cpu_seconds, publish  # noqa: E402

HELD_OUT_PER_DIGIT = 30
HEADERS = [
    "writer",
    "tuned on",
    "samples per digit",
    "writer before",
    "writer after",
    "MNIST before",
    "MNIST after",
    "seconds",
    "CPU seconds",
]


def writer_accuracy(predictor: Predictor, root: Path) -> float:
    """The share of the images in the class-folder tree `root` read as their folder's digit."""
    files = collect_files([root])
    results = predictor.predict_files(files)
    right = [
        isinstance(result, FilePrediction) and result.digit == int(result.path.parent.name)
        for result in results
    ]
    return float(np.mean(right))


def measure(writer: str, samples: int, before: float, scratch: Path) -> list[object]:
    """One row of the table: teach `writer` from `samples` digits of each label; `before` is
    the shipped model's accuracy on the writer's held-out digits."""
    (x, y), _ = load_mnist()
    teach, held = scratch / f"{writer}-{samples}", scratch / f"{writer}-held"
    write_writer(teach, writer, x[50000:55000], y[50000:55000], samples, seed=samples)
    cpu, started = cpu_seconds(), time.perf_counter()
    result = finetune(
        pretrained_model_path(), teach, scratch / f"run-{writer}-{samples}", held_out_fraction=0.0
    )
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    after = writer_accuracy(Predictor.load(result.onnx_path), held)
    return [
        writer,
        "yes" if writer in TUNED_ON else "no",
        samples,
        f"{before:.1%}",
        f"{after:.1%}",
        f"{result.before.mnist:.2%}",
        f"{result.after.mnist:.2%}",
        f"{seconds:.0f}",
        f"{cpu:.0f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", nargs="+", choices=list(WRITERS), default=list(WRITERS))
    parser.add_argument("--samples", nargs="+", type=int, default=[5, 10, 20])
    parser.add_argument("--jobs", type=int, default=1, help="rows measured at once (default: 1)")
    parser.add_argument("--note", default="", help="a sentence added to the published context")
    parser.add_argument("--no-write", action="store_true", help="print only (default: publish)")
    args = parser.parse_args()

    (x, y), _ = load_mnist()
    rows: list[list[object]] = []
    spawn = multiprocessing.get_context("spawn")  # TensorFlow does not survive a fork
    shipped = Predictor.load()
    before: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch, ProcessPoolExecutor(args.jobs, spawn) as pool:
        for writer in args.writers:
            held = Path(scratch) / f"{writer}-held"
            write_writer(held, writer, x[55000:], y[55000:], HELD_OUT_PER_DIGIT, seed=1)
            before[writer] = writer_accuracy(shipped, held)
        jobs = [
            pool.submit(measure, writer, samples, before[writer], Path(scratch))
            for writer in args.writers
            for samples in args.samples
        ]
        for job in jobs:
            rows.append(job.result())
            print(markdown_table(HEADERS, rows[-1:], right=range(2, 9)), flush=True)
    context = (
        f"Measured by `.venv/bin/python bench/personalize.py --writers {' '.join(args.writers)} "
        f"--samples {' '.join(map(str, args.samples))} --jobs {args.jobs}`: the shipped cnn "
        "fine-tuned by `digitlab.finetune` (its defaults) on every sample given; the writer's "
        f"accuracy on {HELD_OUT_PER_DIGIT} other digits per label in the same hand, read as files. "
        f"Load average {os.getloadavg()[0]:.1f} at the end. {args.note}"
    ).strip()
    print()
    publish(
        "Learning a person's handwriting",
        context,
        markdown_table(HEADERS, rows, right=range(2, 9)),
        write=not args.no_write,
    )


if __name__ == "__main__":
    main()
