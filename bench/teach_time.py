"""Seconds from "Teach the model" to answers from the taught model (issue 19), on a real
`digitlab serve` with 2 workers and the shipped model.

Stores `--per-digit` MNIST test digits of each class as samples through `POST /samples`,
starts `POST /finetune`, polls `GET /finetune` until the job ends, then `POST /predict`
until an answer names the taught model, and prints the wall-clock seconds of the whole
and the job's CPU seconds. The samples and the taught model go to a temporary folder.

    .venv/bin/python bench/teach_time.py [--per-digit 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

from digitlab.data.sources import load_mnist
from digitlab.serve.process import server_process
from digitlab.styles import encode


def _job_cpu_seconds(seen: dict[int, float]) -> None:
    for process in psutil.process_iter(["cmdline"]):
        if "digitlab.serve.teaching_job" in " ".join(process.info["cmdline"] or []):
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            seen[process.pid] = times.user + times.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-digit", type=int, default=20, help="samples per digit (20)")
    args = parser.parse_args()
    _, (x_test, y_test) = load_mnist()
    scans = 255 - x_test  # dark ink on white paper, as a person's scan would be
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        options = ["--samples-dir", str(folder / "samples")]
        with server_process(folder / "server.log", workers=2, extra_args=options) as url:
            http = httpx.Client(base_url=url, timeout=60)
            for digit in range(10):
                for index in np.flatnonzero(y_test == digit)[: args.per_digit]:
                    answer = http.post(
                        "/samples",
                        params={"label": digit},
                        content=encode(scans[index], "PNG"),
                        headers={"Content-Type": "image/png"},
                    )
                    answer.raise_for_status()
            start = time.monotonic()
            http.post("/finetune").raise_for_status()
            job_cpu: dict[int, float] = {}
            while (status := http.get("/finetune").json())["state"] == "running":
                _job_cpu_seconds(job_cpu)
                time.sleep(0.2)
            if status["state"] != "done":
                raise SystemExit(f"the fine-tune ended {status['state']}: {status}")
            probe = {"content": encode(scans[0], "PNG"), "headers": {"Content-Type": "image/png"}}
            while "taught" not in http.post("/predict", **probe).json()["model"]:
                time.sleep(0.1)
            seconds = time.monotonic() - start
    print(f"samples: {10 * args.per_digit}; teach -> taught answers: {seconds:.1f} s wall")
    print(f"the job's CPU seconds (user + system, last sample): {sum(job_cpu.values()):.1f}")
    print(f"load average at the end: {psutil.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
