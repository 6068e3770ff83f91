"""How long `digitlab predict one.png` and `digitlab read one.png` take in a fresh process
with the shipped model (target: under 1.5 s; its ONNX copy answers without TensorFlow).

Writes one MNIST test digit as a PNG, runs each verb once to warm the OS file cache, then
times `--repeats` runs and prints each time and the median, in seconds.

    .venv/bin/python bench/cold_start.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from PIL import Image

from digitlab.data.sources import load_mnist

sys.path.insert(0, str(Path(__file__).parent))
from cli_startup import cli_command, seconds_to_answer  # noqa: E402

TARGET_SECONDS = 1.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed runs per verb after a warm-up (default: 5)"
    )
    args = parser.parse_args()
    _, (x_test, _) = load_mnist()
    with tempfile.TemporaryDirectory() as folder:
        image = Path(folder) / "one.png"
        Image.fromarray(255 - x_test[0]).save(image)
        for verb in ("predict", "read"):
            command = [*cli_command(), verb, str(image)]
            seconds_to_answer(command)
            times = [seconds_to_answer(command) for _ in range(args.repeats)]
            median = statistics.median(times)
            verdict = "within" if median < TARGET_SECONDS else "OVER"
            runs = " ".join(f"{seconds:.3f}" for seconds in times)
            print(f"{verb}: runs (s) {runs}; median {median:.3f} s ({verdict} {TARGET_SECONDS} s)")


if __name__ == "__main__":
    main()
