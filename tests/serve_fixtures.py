"""Fixtures of the serving tests: a small real model and a real `digitlab serve`.

A pytest plugin of tests/test_serve_api.py and tests/test_web_page.py (`pytest_plugins`), so
the model is trained once per session and shared by both.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from digitlab.atomic import atomic_path
from digitlab.serve.process import server_process

#: Worker processes of the real server: two, so that every test of it covers the
#: multi-process set-up `digitlab serve` uses on a machine with several cores.
SERVER_WORKERS = 2


def train_small_model(mnist, path: Path) -> Path:
    """Train a small MLP on 12,000 MNIST images (a few seconds) and save it to `path`."""
    import keras

    from digitlab.models import build_model

    (x_train, y_train), _ = mnist
    keras.utils.set_random_seed(0)
    model = build_model("mlp", hidden_units=(256,), dropout=0.1)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train[:12000], y_train[:12000], epochs=3, batch_size=128, verbose=0)
    with atomic_path(path) as tmp:
        model.save(tmp)
    return path


@pytest.fixture(scope="session")
def model_path(mnist, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real Keras model file trained on MNIST, trained once per session."""
    return train_small_model(mnist, tmp_path_factory.mktemp("serve-model") / "small-mlp.keras")


@pytest.fixture(scope="session")
def server_url(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a real `digitlab serve` subprocess serving `model_path` with
    SERVER_WORKERS worker processes."""
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    with server_process(log_path, model=model_path, workers=SERVER_WORKERS) as url:
        yield url
