"""Teaching the served model a person's handwriting: the background fine-tune and the swap.

`POST /finetune` runs `digitlab.finetune` on the stored samples in a child process
(`python -m digitlab.serve.teaching_job`), niced, so that training takes neither the server's
request threads nor its GIL. A server may run several worker processes and any of them may
be asked about the job, so everything about it lives in files, in the samples folder's
hidden `.taught/` folder (class-folder readers skip hidden folders):

- `job.lock`: locked (flock) by the worker that starts a job and inherited by the job's
  process, so it is held exactly as long as the job lives, even if the job is killed with
  -9; a second start, in any worker, finds it held.
- `status.json`: the job's state and progress, rewritten atomically by the job.
- `current.json`: the taught model in use, replaced atomically when a job ends well. Each
  worker checks it (one `stat`) before every request and swaps to a new one before
  answering: requests already in flight finish on the old model, every later one gets the
  new one.
- `<job>/samples`, the samples a job was taught from (a copy, so that uploads and deletions
  cannot change them under it), `<job>/run` its run folder and `<job>/job.log` its output.

A taught model survives a restart of the server that serves the same model with the same
samples folder (`current.json` names the model it was taught from); serving another model
starts from that one. Deleting `current.json` returns every worker to the model it started
with. Teaching again starts from the model in use, on all the samples stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import anyio
from pydantic import BaseModel, ConfigDict
from starlette.types import ASGIApp, Receive, Scope, Send

from digitlab.atomic import atomic_write_text
from digitlab.errors import DigitlabError, TeachingBusyError, TeachingError
from digitlab.serve.samples import DEFAULT_MAX_SAMPLES, SampleStore, default_samples_dir
from digitlab.serve.schemas import FinetuneStatus
from digitlab.serve.teaching_job import JobSpec, TaughtModel, read_status

if TYPE_CHECKING:
    from fastapi import FastAPI

    from digitlab.inference.predictor import Predictor
    from digitlab.serve.batching import InferenceBatcher

#: Samples each digit that has any needs before teaching starts: fewer teach little and
#: leave nothing to hold out for the before/after check.
MIN_SAMPLES_PER_DIGIT = 5

#: Seconds a replaced model's inference thread stays up for requests that already hold it.
OLD_MODEL_GRACE_S = 60.0

#: The environment variable that hands `TeachingSettings` to `digitlab serve`'s workers.
TEACHING_ENVIRONMENT_VARIABLE = "DIGITLAB_SERVE_TEACHING"

_FOLDER_NAME = ".taught"

_log = logging.getLogger(__name__)

#: What the server calls to make a predictor answer every later request; it returns the
#: inference batcher it replaced.
Install = Callable[["FastAPI", "Predictor"], Awaitable["InferenceBatcher | None"]]


class TeachingSettings(BaseModel):
    """Where samples live, how many, and how a fine-tune runs (None: `finetune`'s default)."""

    model_config = ConfigDict(frozen=True)

    samples_dir: Path | None = None
    max_samples: int = DEFAULT_MAX_SAMPLES
    epochs: int | None = None
    replay: int | None = None

    @classmethod
    def from_environment(cls) -> TeachingSettings:
        """The settings `digitlab serve` put in `$DIGITLAB_SERVE_TEACHING` (default: none)."""
        text = os.environ.get(TEACHING_ENVIRONMENT_VARIABLE)
        return cls.model_validate_json(text) if text else cls()


def teaching_shortfall(counts: Mapping[int, int]) -> str | None:
    """Why samples with these per-digit `counts` are too few to teach from; None when
    they are enough."""
    if not any(counts.values()):
        return (
            f"teaching needs samples: store at least {MIN_SAMPLES_PER_DIGIT} of a digit "
            "first (POST /samples)"
        )
    short = [
        f"{label} has {n}" for label, n in sorted(counts.items()) if 0 < n < MIN_SAMPLES_PER_DIGIT
    ]
    if short:
        return (
            f"teaching needs at least {MIN_SAMPLES_PER_DIGIT} samples of each digit that has "
            f"any: {', '.join(short)}"
        )
    return None


class Teaching:
    """One server process's side of teaching: its samples, the job, and the model swap.

    `served_model` is the model the server was started with (None: the shipped one);
    `install` makes a predictor answer the app's later requests.
    """

    def __init__(
        self,
        settings: TeachingSettings,
        served_model: str | os.PathLike[str] | None,
        install: Install,
    ) -> None:
        self.settings = settings
        self.samples = SampleStore(
            settings.samples_dir or default_samples_dir(), settings.max_samples
        )
        self.folder = self.samples.root / _FOLDER_NAME
        self._served_model = Path(served_model) if served_model is not None else None
        self._install = install
        self._base: Predictor | None = None
        self._taught: TaughtModel | None = None
        self._seen: tuple[int, int, int] | None = None
        self._swap_lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()

    # ---- the job ----------------------------------------------------------------------

    def start(self) -> FinetuneStatus:
        """Start a fine-tune of the model in use on the stored samples; return its status.

        Raises `TeachingError` when the samples are too few or the model has no `.keras`
        file to train, `TeachingBusyError` when a job is running already.
        """
        counts = self.samples.counts()
        shortfall = teaching_shortfall(counts)
        if shortfall is not None:
            raise TeachingError(shortfall)
        model = self._model_to_teach()
        base_name = self._base.name if self._base is not None else "the served model"
        job = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        with self._job_lock() as lock:
            if lock is None:
                raise TeachingBusyError(
                    "a fine-tune is already running; wait for it to end (GET /finetune)"
                )
            status = FinetuneStatus(
                state="running", job=job, samples=sum(counts.values()), stage="starting"
            )
            self._write_status(status)
            spec = JobSpec(
                folder=str(self.folder),
                samples_dir=str(self.samples.root),
                job=job,
                model=str(model),
                base=self._base_identity(),
                base_name=base_name,
                epochs=self.settings.epochs,
                replay=self.settings.replay,
            )
            (self.folder / job).mkdir()
            with open(self.folder / job / "job.log", "wb") as log:
                # The job inherits the locked file: the lock lasts exactly as long as it.
                process = subprocess.Popen(
                    [sys.executable, "-m", "digitlab.serve.teaching_job", spec.model_dump_json()],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=(lock.fileno(),),
                )
        threading.Thread(target=process.wait, name="digitlab-teach-reaper", daemon=True).start()
        return status

    def status(self) -> FinetuneStatus:
        """The latest job's status (idle when there has been none)."""
        status = self._read_status()
        if status.state != "running":
            return status
        with self._job_lock() as lock:
            if lock is None:
                return status
            # Nobody holds the lock: the job ended, maybe just now.
            status = self._read_status()
        if status.state == "running":
            log = self.folder / (status.job or "") / "job.log"
            return status.model_copy(
                update={
                    "state": "failed",
                    "reason": f"the fine-tune process stopped before it finished (see {log})",
                }
            )
        return status

    def _model_to_teach(self) -> Path:
        """The `.keras` file of the model in use."""
        if self._taught is not None:
            return Path(self._taught.keras)
        if self._served_model is None:
            from digitlab.inference.pretrained import pretrained_model_path

            return pretrained_model_path()
        keras_file = self._served_model.with_suffix(".keras")
        if keras_file.is_file():
            return keras_file
        raise TeachingError(
            f"{self._served_model}: only a model with its .keras file beside it can be "
            "taught; serve the .keras model (or its ONNX copy next to it)"
        )

    def _base_identity(self) -> str:
        """The model this server started with, as `current.json` names it."""
        if self._served_model is not None:
            return os.path.realpath(self._served_model)
        from digitlab.inference.pretrained import pretrained_onnx_path

        return os.path.realpath(pretrained_onnx_path())

    @contextlib.contextmanager
    def _job_lock(self) -> Iterator[BinaryIO | None]:
        """The job lock file, locked by this process; None when a job holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "job.lock", "a+b") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield None
                return
            yield lock

    def _read_status(self) -> FinetuneStatus:
        return read_status(self.folder)

    def _write_status(self, status: FinetuneStatus) -> None:
        atomic_write_text(self.folder / "status.json", status.model_dump_json())

    # ---- the swap ---------------------------------------------------------------------

    async def refresh(self, app: FastAPI) -> None:
        """Make `app` answer with the model `current.json` names, if that changed since
        the last call: one `stat` when it has not."""
        if self._base is None:
            self._base = app.state.predictor
        pointer = self.folder / "current.json"
        if _signature(pointer) == self._seen:
            return
        async with self._swap_lock:
            signature = _signature(pointer)
            if signature == self._seen:
                return
            taught = self._read_pointer(pointer)
            if taught != self._taught:
                await self._swap_to(app, taught)
            self._seen = signature

    async def _swap_to(self, app: FastAPI, taught: TaughtModel | None) -> None:
        if taught is None:
            predictor = self._base
        else:
            try:
                threshold = app.state.predictor.not_digit_threshold
                predictor = await anyio.to_thread.run_sync(_load_taught, taught, threshold)
            except DigitlabError as error:
                _log.warning("keeping the model in use: %s", error)
                return
        assert predictor is not None
        previous = await self._install(app, predictor)
        self._taught = taught
        if previous is not None:
            task = asyncio.get_running_loop().create_task(_close_later(previous))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def _read_pointer(self, pointer: Path) -> TaughtModel | None:
        """The taught model `pointer` names, if it was taught from this server's model."""
        try:
            taught = TaughtModel.model_validate_json(pointer.read_bytes())
        except FileNotFoundError:
            return None
        except ValueError as error:
            _log.warning("%s is unreadable, serving the model without it: %s", pointer, error)
            return None
        return taught if taught.base == self._base_identity() else None


class TaughtModelMiddleware:
    """Pure ASGI middleware: before each HTTP request, `Teaching.refresh` the app's model."""

    def __init__(self, app: ASGIApp, teaching: Teaching) -> None:
        self.app = app
        self.teaching = teaching

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["app"].state.predictor is not None:
            await self.teaching.refresh(scope["app"])
        await self.app(scope, receive, send)


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _load_taught(taught: TaughtModel, not_digit_threshold: float) -> Predictor:
    """The taught model, answering with the served model's not-digit threshold."""
    from digitlab.inference.predictor import Predictor

    predictor = Predictor.load(taught.onnx, threads=1, not_digit_threshold=not_digit_threshold)
    predictor.name = taught.name
    return predictor


async def _close_later(batcher: InferenceBatcher) -> None:
    await anyio.sleep(OLD_MODEL_GRACE_S)
    await anyio.to_thread.run_sync(batcher.close)
