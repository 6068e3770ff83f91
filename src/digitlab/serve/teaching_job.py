"""The teaching job's process: `python -m digitlab.serve.teaching_job SPEC_JSON`.

Started by `Teaching.start` (serve/teaching.py) with the job lock inherited, it copies the
samples, runs `digitlab.finetune` on them from the model in use, and then points
`current.json` at the taught model; all along it rewrites `status.json` atomically, so
that every server process can report its progress.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from digitlab.atomic import atomic_write_text
from digitlab.errors import DigitlabError
from digitlab.serve.samples import SampleStore
from digitlab.serve.schemas import FinetuneScores, FinetuneStatus

#: The job's niceness: the server's answers come before training.
JOB_NICENESS = 10

#: Seconds between the job's progress writes (a new stage is written at once).
PROGRESS_INTERVAL_S = 0.25


class TaughtModel(BaseModel):
    """`current.json`: the taught model in use and the model it was taught from."""

    base: str
    keras: str
    onnx: str
    name: str
    samples: int


class JobSpec(BaseModel):
    """What the job's process is told, as JSON on its command line."""

    folder: str
    samples_dir: str
    job: str
    model: str
    base: str
    base_name: str
    epochs: int | None
    replay: int | None


def read_status(folder: Path) -> FinetuneStatus:
    """The status the last job in teaching folder `folder` wrote (idle when none)."""
    path = folder / "status.json"
    try:
        return FinetuneStatus.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return FinetuneStatus(state="idle")
    except ValueError as error:
        return FinetuneStatus(state="failed", reason=f"{path} is unreadable: {error}")


def _run_job(spec: JobSpec) -> None:
    """Fine-tune `spec.model` on a copy of the samples; point `current.json` at the result."""
    import digitlab

    started = time.monotonic()
    folder, job_dir = Path(spec.folder), Path(spec.folder) / spec.job
    status_path = folder / "status.json"
    status = FinetuneStatus(state="running", job=spec.job, stage="copying samples")
    atomic_write_text(status_path, status.model_dump_json())
    samples = SampleStore(spec.samples_dir).snapshot(job_dir / "samples")
    status = status.model_copy(update={"samples": samples})
    last_write = 0.0

    def report(progress: Any) -> None:
        nonlocal status, last_write
        stage_changed = progress.stage != status.stage
        status = status.model_copy(
            update={
                "stage": progress.stage,
                "epoch": progress.epoch,
                "epochs": progress.epochs,
                "fraction": min(1.0, max(0.0, progress.fraction)),
            }
        )
        if stage_changed or time.monotonic() - last_write >= PROGRESS_INTERVAL_S:
            atomic_write_text(status_path, status.model_dump_json())
            last_write = time.monotonic()

    options = {
        name: value
        for name, value in (("epochs", spec.epochs), ("replay", spec.replay))
        if value is not None
    }
    result = digitlab.finetune(
        spec.model, job_dir / "samples", job_dir / "run", progress=report, **options
    )
    name = f"{spec.base_name}, taught from {samples} samples"
    taught = TaughtModel(
        base=spec.base,
        keras=str(result.model_path),
        onnx=str(result.onnx_path),
        name=name,
        samples=samples,
    )
    # The model first, then the news: a client told "done" finds the new model in use.
    atomic_write_text(folder / "current.json", taught.model_dump_json())
    done = status.model_copy(
        update={
            "state": "done",
            "stage": "done",
            "fraction": 1.0,
            "before": FinetuneScores(person=result.before.person, mnist=result.before.mnist),
            "after": FinetuneScores(person=result.after.person, mnist=result.after.mnist),
            "model": name,
            "seconds": time.monotonic() - started,
        }
    )
    atomic_write_text(status_path, done.model_dump_json())


def main(arguments: list[str]) -> int:
    """The job's process: `python -m digitlab.serve.teaching_job SPEC_JSON`."""
    os.nice(JOB_NICENESS)
    spec = JobSpec.model_validate_json(arguments[0])
    try:
        _run_job(spec)
        return 0
    except DigitlabError as error:
        reason = str(error)
    except Exception as error:
        traceback.print_exc()
        reason = f"{type(error).__name__}: {error}"
    status = read_status(Path(spec.folder)).model_copy(update={"state": "failed", "reason": reason})
    atomic_write_text(Path(spec.folder) / "status.json", status.model_dump_json())
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
