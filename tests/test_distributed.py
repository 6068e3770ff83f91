"""Data-parallel training on several processes (JAX backend): local workers, the settings
they must share, clear errors, identical weights, one run folder, no stray processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from digitlab.cli import app
from digitlab.distributed import free_port, resolve_settings
from digitlab.errors import ConfigError
from digitlab.training.processes import ProcessShare

JAX_ENV = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"}
# Small and quick: the point is that the processes train together, not the accuracy.
TRAIN_FLAGS = ["--limit", "2000", "--no-augment", "--set", "model_options.hidden_units=[128]"]
CHECKSUM = re.compile(r"Process (\d) of 2: final weights sha256 ([0-9a-f]{64})")
STARTED = re.compile(r"Started worker (\d) of 2 \(pid (\d+)\)")


def digitlab(*args: str, env: dict[str, str] = JAX_ENV, **options) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "digitlab", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **options,
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_settings_come_from_flags_or_environment_and_must_be_complete():
    environ = {
        "DIGITLAB_COORDINATOR": "node0:7070",
        "DIGITLAB_NUM_PROCESSES": "4",
        "DIGITLAB_PROCESS_ID": "3",
    }
    settings = resolve_settings(environ=environ)
    assert (settings.coordinator, settings.num_processes, settings.process_id) == (
        "node0:7070",
        4,
        3,
    )
    assert resolve_settings(process_id=1, environ=environ).process_id == 1
    assert resolve_settings(environ={}) is None
    with pytest.raises(ConfigError, match="missing: DIGITLAB_NUM_PROCESSES, DIGITLAB_PROCESS_ID"):
        resolve_settings(coordinator="node0:7070", environ={})
    with pytest.raises(ConfigError, match="process_id must be between 0 and 3"):
        resolve_settings(process_id=4, environ=environ)
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        resolve_settings(coordinator="node0", environ=environ)


def test_shards_are_disjoint_equal_and_split_the_batch():
    items = np.arange(1001)
    shards = [ProcessShare(index, 2).shard(items)[0] for index in range(2)]
    assert len(shards[0]) == len(shards[1]) == 500
    assert not set(shards[0]) & set(shards[1])
    assert ProcessShare(1, 2).local_batch_size(64) == 32
    with pytest.raises(ConfigError, match="batch_size 63 does not split evenly over 2"):
        ProcessShare(0, 2).local_batch_size(63)


@pytest.mark.slow
def test_distributed_training_on_tensorflow_backend_says_it_needs_jax(tmp_path):
    # This test session runs the TensorFlow backend.
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--coordinator",
            f"127.0.0.1:{free_port()}",
            "--num-processes",
            "2",
            "--process-id",
            "1",
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: distributed training needs KERAS_BACKEND=jax;")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_unreachable_coordinator_fails_within_the_timeout(tmp_path):
    started = time.monotonic()
    worker = digitlab(
        "train",
        "--coordinator",
        f"127.0.0.1:{free_port()}",
        "--num-processes",
        "2",
        "--process-id",
        "1",
        "--join-timeout",
        "3",
        "--out",
        str(tmp_path / "run"),
    )
    output, _ = worker.communicate(timeout=300)
    assert worker.returncode == 1
    last = output.strip().splitlines()[-1]
    assert re.fullmatch(
        r"Error: coordinator 127\.0\.0\.1:\d+ not reachable within the timeout "
        r"\(process 1 of 2: .*\); start process 0 there, .*",
        last,
    ), output
    assert "Traceback" not in output
    assert time.monotonic() - started < 120


@pytest.mark.slow
def test_processes_started_by_hand_refuse_different_settings(tmp_path):
    coordinator = f"127.0.0.1:{free_port()}"
    workers = [
        digitlab(
            "train",
            "--coordinator",
            coordinator,
            "--num-processes",
            "2",
            "--process-id",
            str(index),
            "--epochs",
            str(1 + index),
            *TRAIN_FLAGS,
            "--join-timeout",
            "200",
            "--out",
            str(tmp_path / "run"),
        )
        for index in range(2)
    ]
    outputs = [worker.communicate(timeout=300)[0] for worker in workers]
    for worker, output in zip(workers, outputs, strict=True):
        assert worker.returncode == 1, output
        assert output.strip().splitlines()[-1] == (
            "Error: processes disagree on their settings: process(es) 1 differ from process 0 "
            "(config, run folder or versions); give every process the same flags, config file, "
            "--out or --resume, and the same installation"
        )
    assert not (tmp_path / "run" / "checkpoints" / "state.json").exists()


@pytest.mark.slow
def test_killed_worker_stops_all_then_resume_ends_with_identical_weights(tmp_path):
    run_dir = tmp_path / "run"
    launcher = digitlab(
        "train",
        "--local-processes",
        "2",
        "--epochs",
        "3",
        *TRAIN_FLAGS,
        "--out",
        str(run_dir),
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(launcher.stdout), daemon=True)
    reader.start()
    # Kill worker 1 once epoch 1 of 3 is committed.
    state = run_dir / "checkpoints" / "state.json"
    while not state.exists():
        assert launcher.poll() is None, "launcher ended early:\n" + "".join(lines)
        time.sleep(0.05)
    pids = {int(match[1]): int(match[2]) for match in STARTED.finditer("".join(lines))}
    assert set(pids) == {0, 1}
    os.kill(pids[1], signal.SIGKILL)
    launcher.wait(timeout=120)
    reader.join(timeout=10)
    output = "".join(lines)
    assert launcher.returncode == 1
    assert (
        f"Error: worker 1 of 2 (pid {pids[1]}) was killed by SIGKILL; stopped all the other workers"
    ) in output
    assert not any(alive(pid) for pid in pids.values())

    resumed = digitlab(
        "train",
        "--local-processes",
        "2",
        "--resume",
        str(run_dir),
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output[-3000:]
    checksums = dict(CHECKSUM.findall(output))
    assert set(checksums) == {"0", "1"} and checksums["0"] == checksums["1"]
    record = json.loads((run_dir / "distributed.json").read_text())
    assert record["weights_sha256"] == [checksums["0"]] * 2
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs_completed"] == 3
    history = (run_dir / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == ["1", "2", "3"]
    for name in (
        "config.json",
        "curves.png",
        "model.keras",
        "checkpoints/best.keras",
        "checkpoints/last.keras",
        "tensorboard",
    ):
        assert (run_dir / name).exists(), name
    started = {int(pid) for pid in re.findall(r"\(pid (\d+)\)", output)}
    assert len(started) == 2 and not any(alive(pid) for pid in started)
