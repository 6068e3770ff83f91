"""The package on the JAX backend: every model builds, trains, saves, loads and predicts.

The test session itself runs TensorFlow, and Keras picks its backend once per process, so
the JAX part runs in a subprocess with KERAS_BACKEND=jax.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Each test starts a Python process on the JAX backend.
pytestmark = pytest.mark.slow

JAX_ENV = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"}

# Each registered model (with the augmentation wrapper that training uses) fits a few steps
# on real MNIST, is saved, loaded with plain Keras and must predict the same probabilities.
_ROUND_TRIP = """
import json, sys
import keras, numpy as np
from digitlab.training.config import TrainConfig
from digitlab.data.sources import load_mnist
from digitlab.models import MODELS, build_model
from digitlab.training.compilation import build_training_model

(x, y), (x_test, _) = load_mnist()
report = {"backend": keras.backend.backend(), "tensorflow_loaded": "tensorflow" in sys.modules}
small = {"mlp": {"hidden_units": (64,)}, "cnn": {"filters": (8, 8, 8)},
         "resnet": {"filters": (8, 8, 8)}, "strided": {"filters": (8, 8, 8, 8)}}
for name in MODELS:
    keras.utils.set_random_seed(0)
    inner = build_model(name, **small[name])
    # The augmentation layer compiles slowly: try it (in training mode) with one model only.
    model = build_training_model(inner, TrainConfig(model=name, augment=name == "mlp"))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x[:320], y[:320], batch_size=32, epochs=1, verbose=0)
    path = sys.argv[1] + f"/{name}.keras"
    inner.save(path)
    loaded = keras.models.load_model(path, compile=False, safe_mode=True)
    expected = inner.predict(x_test[:64], verbose=0)
    report[name] = {
        "loss": float(history.history["loss"][-1]),
        "max_difference": float(np.abs(loaded.predict(x_test[:64], verbose=0) - expected).max()),
        "rows_sum_to_one": bool(np.allclose(expected.sum(axis=1), 1.0, atol=1e-5)),
    }
print(json.dumps(report))
"""


def test_every_model_fits_saves_loads_and_predicts_identically_on_jax(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-c", _ROUND_TRIP, str(tmp_path)],
        env=JAX_ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report.pop("backend") == "jax"
    # The data path feeds numpy arrays: nothing there needs TensorFlow on JAX.
    assert report.pop("tensorflow_loaded") is False
    assert set(report) == {"mlp", "cnn", "resnet", "strided"}
    for name, result in report.items():
        assert 0 < result["loss"] < 10, name
        assert result["max_difference"] == 0.0, name
        assert result["rows_sum_to_one"], name


def test_info_reports_the_jax_backend():
    completed = subprocess.run(
        [sys.executable, "-m", "digitlab", "info"],
        env=JAX_ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    rows = dict(line.split(None, 1) for line in completed.stdout.splitlines() if " " in line)
    assert rows["backend"].strip() == "jax"
    assert rows["devices"].strip().startswith("CPU:")
