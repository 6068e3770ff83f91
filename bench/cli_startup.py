"""How long `digitlab --help` takes in a fresh process (target: under 1 s).

The command line imports no TensorFlow, Keras or scikit-learn until a verb needs them, so
its help answers at once; this measures that from the outside, the way a person meets it.
Runs the console script next to this Python (or `python -m digitlab` when there is none)
after one warm-up run, and prints each time and their median, in seconds.

    .venv/bin/python bench/cli_startup.py [--repeats 5] [--verb train]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_SECONDS = 1.0


def cli_command() -> list[str]:
    """The installed `digitlab` console script, or the module run by this interpreter."""
    script = shutil.which("digitlab", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "digitlab"]


def seconds_to_answer(command: list[str]) -> float:
    """Wall-clock seconds `command` takes, from start to exit."""
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed runs after the warm-up (default: 5)"
    )
    parser.add_argument("--verb", help="time `digitlab VERB --help` instead (default: none)")
    args = parser.parse_args()

    command = [*cli_command(), *([args.verb] if args.verb else []), "--help"]
    seconds_to_answer(command)  # the first run also fills the OS file cache
    times = [seconds_to_answer(command) for _ in range(args.repeats)]
    median = statistics.median(times)
    print(f"command: {' '.join(command)}")
    print("runs (s): " + " ".join(f"{seconds:.3f}" for seconds in times))
    verdict = "within" if median < TARGET_SECONDS else "OVER"
    print(f"median: {median:.3f} s ({verdict} the {TARGET_SECONDS:.0f} s target)")


if __name__ == "__main__":
    main()
