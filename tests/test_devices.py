"""Threads and devices: --threads sizes TensorFlow's thread pools, --device mirrors training
over several devices (here two logical CPUs), and bad requests are one-line errors.

Thread counts and logical devices are fixed when TensorFlow starts, and this test process
has started it already, so the real runs are subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from digitlab.cli import app
from digitlab.errors import ConfigError
from digitlab.inference.modelfile import load_keras_model
from digitlab.training.config import TrainConfig, config_from_json, make_config
from digitlab.training.devices import DeviceRequest, parse_device

ENVIRONMENT = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
# A small model and data set: the point is where training runs, not the accuracy record.
SMALL_RUN = [
    "--limit",
    "2000",
    "--epochs",
    "2",
    "--batch-size",
    "32",
    "--no-augment",
    "--set",
    "model_options.hidden_units=[64]",
    "--set",
    "lr_schedule=constant",
]


def _python(code: str, **environment: str) -> str:
    """Run `code` in a fresh Python; return its stdout (failing the test on an error)."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**ENVIRONMENT, **environment},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _train(run_dir: Path, *options: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "digitlab", "train", *SMALL_RUN, *options, "--out", str(run_dir)],
        capture_output=True,
        text=True,
        env=ENVIRONMENT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((run_dir / "summary.json").read_text())


def _test_accuracy(run_dir: Path, mnist) -> float:
    _, (x_test, y_test) = mnist
    probabilities = load_keras_model(run_dir / "model.keras").predict(x_test, verbose=0)
    return float(np.mean(probabilities.argmax(axis=1) == y_test))


def test_device_requests_parse_without_starting_tensorflow():
    assert parse_device(None) == parse_device(" AUTO ") == DeviceRequest("auto")
    assert parse_device("cpu:1") == DeviceRequest("cpu")
    assert parse_device("cpu:2") == DeviceRequest("split", (), 2)
    assert parse_device("/CPU:0, /device:cpu:1") == DeviceRequest("list", ("/cpu:0", "/cpu:1"), 2)
    assert parse_device("/gpu:0,/gpu:1") == DeviceRequest("list", ("/gpu:0", "/gpu:1"), 1)
    for bad, message in [
        ("tpu", "unknown; valid: auto, cpu, gpu, cpu:N"),
        ("gpu:1", "write /gpu:1 for that GPU"),
        ("cpu:0", "at least 1 device"),
        ("/cpu:0,/cpu:0", "names a device twice"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_device(bad)


def test_threads_and_device_are_settings_checked_and_saved(tmp_path):
    config_file = tmp_path / "train.toml"
    config_file.write_text('threads = 3\ndevice = "cpu:2"\n')
    config = make_config(config_file)
    assert (config.threads, config.device) == (3, "cpu:2")
    # A run folder's config.json holds null for "all cores" and "auto": it must read back.
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps(TrainConfig().to_dict()))
    assert config_from_json(saved) == TrainConfig()
    with pytest.raises(ConfigError, match="threads must be at least 1, got 0"):
        make_config(overrides={"threads": 0})
    with pytest.raises(ConfigError, match="device must be a string"):
        make_config(overrides={"device": 2})


def test_cli_rejects_bad_threads_and_devices_in_one_line(tmp_path):
    cases = [
        (["--threads", "0"], "Error: command line: threads must be at least 1, got 0"),
        (["--device", "tpu"], "Error: command line: device 'tpu' is unknown; valid: auto, cpu"),
        (["--device", "/gpu:99"], "Error: device '/gpu:99': no /gpu:99 on this machine; GPUs"),
    ]
    for options, start in cases:
        out = tmp_path / "run"
        result = CliRunner().invoke(app, ["train", *options, "--out", str(out)])
        assert result.exit_code == 1, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(start), result.output
        assert not out.exists()


@pytest.mark.slow
def test_threads_set_the_pools_before_tensorflow_starts_and_refuse_after():
    output = _python("""
        import collections, json, os
        from digitlab.training.config import TrainConfig
        from digitlab.training.devices import (
            configure_threads, prepare_training, split_cpu, thread_counts, training_strategy)
        from digitlab.errors import ConfigError

        configure_threads(1)
        strategy = training_strategy("cpu:2")
        import tensorflow as tf
        tf.matmul(tf.ones((256, 256)), tf.ones((256, 256)))
        names = collections.Counter(
            open(f"/proc/self/task/{task}/comm").read().strip()
            for task in os.listdir("/proc/self/task"))
        errors = []
        for late in (lambda: configure_threads(2), lambda: split_cpu(3),
                     lambda: prepare_training(TrainConfig(device="cpu:2", batch_size=33))):
            try:
                late()
            except ConfigError as error:
                errors.append(str(error))
        # What is already in effect may be asked for again; None never fails.
        configure_threads(1)
        configure_threads(None)
        split_cpu(2)
        print(json.dumps({
            "threads": thread_counts(), "compute_threads": names["tf_Compute"],
            "replicas": strategy.num_replicas_in_sync,
            "devices": list(strategy.extended.worker_devices),
            "same_as_list": list(training_strategy("/cpu:0,/cpu:1").extended.worker_devices),
            "errors": errors}))
    """)
    report = json.loads(output.strip().splitlines()[-1])
    assert report["threads"] == {"intra_op": 1, "inter_op": 1}
    # TensorFlow names its inter-op pool's threads tf_Compute: one thread, not one per core.
    assert report["compute_threads"] == 1
    assert report["replicas"] == 2
    assert [name.rsplit("/", 1)[-1] for name in report["devices"]] == [
        "device:CPU:0",
        "device:CPU:1",
    ]
    assert report["same_as_list"] == report["devices"]
    too_late, split_too_late, odd_batch = report["errors"]
    assert too_late.startswith("threads=2: TensorFlow has already started in this process")
    assert split_too_late.startswith("cannot split the CPU into 3 devices: TensorFlow has")
    assert odd_batch.startswith("batch_size 33 does not split evenly over 2 replicas")


@pytest.mark.slow
def test_other_backends_refuse_thread_counts_and_devices():
    output = _python(
        """
        from digitlab.training.devices import configure_threads, training_strategy
        from digitlab.errors import ConfigError

        configure_threads(None)
        assert training_strategy("auto") is None
        for request in (lambda: configure_threads(2), lambda: training_strategy("cpu:2")):
            try:
                request()
            except ConfigError as error:
                print(error)
    """,
        KERAS_BACKEND="jax",
    )
    threads, device = output.strip().splitlines()[-2:]
    assert threads.startswith("threads=2: the jax backend has no thread-count setting")
    assert "taskset" in threads
    assert device.startswith("device 'cpu:2' needs the TensorFlow backend")


@pytest.mark.slow
def test_training_mirrored_over_two_logical_cpus_matches_one_device(tmp_path, mnist):
    mirrored = _train(tmp_path / "mirrored", "--threads", "1", "--device", "/cpu:0,/cpu:1")
    assert mirrored["replicas"] == 2
    assert mirrored["device"] == "/cpu:0,/cpu:1"
    assert mirrored["threads"] == {"intra_op": 1, "inter_op": 1}
    assert mirrored["epochs_completed"] == 2
    assert mirrored["xla"] is False  # TensorFlow's XLA cannot compile a mirrored step
    single = _train(tmp_path / "single")
    assert single["replicas"] == 1 and single["device"] == "auto"
    assert single["xla"] is True
    assert single["threads"]["intra_op"] == single["cores"] == len(os.sched_getaffinity(0))

    mirrored_accuracy = _test_accuracy(tmp_path / "mirrored", mnist)
    single_accuracy = _test_accuracy(tmp_path / "single", mnist)
    assert mirrored_accuracy > 0.85
    # Same seed, data and global batch: the two replicas' halves add up to one device's step.
    assert abs(mirrored_accuracy - single_accuracy) < 0.03, (mirrored_accuracy, single_accuracy)


@pytest.mark.slow
def test_xla_across_several_devices_is_a_one_line_error(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "digitlab",
            "train",
            *SMALL_RUN,
            "--set",
            "jit_compile=true",
            "--device",
            "/cpu:0,/cpu:1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=ENVIRONMENT,
        timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: jit_compile=true cannot train across 2 devices on TensorFlow (XLA needs every "
        "variable on one device); leave jit_compile unset"
    )
    assert "Traceback" not in result.stderr
    assert not out.exists()
