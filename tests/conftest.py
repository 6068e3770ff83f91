"""Fixtures shared by the whole suite: the real MNIST arrays, the small real models trained
on them and a real `digitlab serve`, each made once per session by the first test that asks.

The models' recipes live in trained_models.py; Keras is imported only when a model is
trained, so that a session without one starts in a second instead of several.
"""

from __future__ import annotations

import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The user data folder (where servers keep people's samples) is a fresh one per session, so
# that no test, nor any server it starts, reads or writes the user's own.
USER_DATA = tempfile.mkdtemp(prefix="digitlab-test-data-")
os.environ["XDG_DATA_HOME"] = USER_DATA

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from digitlab.data.sources import load_mnist  # noqa: E402
from digitlab.serve.process import server_process  # noqa: E402

if TYPE_CHECKING:
    from playwright.sync_api import Browser

MnistArrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

#: Worker processes of the real server: two, so that every test of it covers the
#: multi-process set-up `digitlab serve` uses on a machine with several cores.
SERVER_WORKERS = 2


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the session's user data folder: every server the suite started has stopped."""
    shutil.rmtree(USER_DATA, ignore_errors=True)


@pytest.fixture(scope="session")
def mnist() -> MnistArrays:
    """The real, verified MNIST arrays (fetched into the user cache on first use)."""
    return load_mnist()


@pytest.fixture(scope="session")
def tiny_model_path(mnist: MnistArrays, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """trained_models.train_tiny_model's model file: a softmax over raw pixels, about 89%
    accurate, for tests that need a real model but not a good one."""
    from trained_models import train_tiny_model

    return train_tiny_model(mnist, tmp_path_factory.mktemp("tiny-model") / "tiny.keras")


@pytest.fixture(scope="session")
def model_path(mnist: MnistArrays, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """trained_models.train_small_mlp's model file: a one-layer MLP, about 94% accurate, for
    tests that predict people's digits and need mostly right answers."""
    from trained_models import train_small_mlp

    return train_small_mlp(mnist, tmp_path_factory.mktemp("small-mlp") / "small-mlp.keras")


@pytest.fixture(scope="session")
def server_workers() -> int:
    """How many worker processes the `server_url` server runs."""
    return SERVER_WORKERS


@pytest.fixture(scope="session")
def server_url(
    model_path: Path, server_workers: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The base URL of a real `digitlab serve` subprocess serving `model_path` with
    `server_workers` worker processes."""
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    with server_process(log_path, model=model_path, workers=server_workers) as url:
        yield url


@pytest.fixture(scope="session")
def shipped_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a real `digitlab serve` subprocess serving the shipped model (what it
    serves without --model) in one process: for tests that read whole numbers, which need a
    stronger model than `model_path`."""
    log_path = tmp_path_factory.mktemp("shipped-server") / "server.log"
    with server_process(log_path, workers=1) as url:
        yield url


@pytest.fixture(scope="session")
def teachable_server(
    tiny_model_path: Path, server_workers: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """The base URL and samples folder of a real `digitlab serve` of `tiny_model_path` with
    `server_workers` processes, whose "Teach the model" runs one short epoch: for tests of
    teaching, which change the model it serves."""
    folder = tmp_path_factory.mktemp("teachable-server")
    samples_dir = folder / "samples"
    options = ["--samples-dir", str(samples_dir), "--teach-epochs", "1", "--teach-replay", "256"]
    with server_process(
        folder / "server.log", model=tiny_model_path, workers=server_workers, extra_args=options
    ) as url:
        yield url, samples_dir


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium per test module (Playwright imported only when used); it ends
    with the module, since its event loop would stop later tests' `asyncio.run`."""
    from playwright.sync_api import sync_playwright

    from web_pages import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
