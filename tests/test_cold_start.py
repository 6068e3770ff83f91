"""`digitlab predict` and `read` with the shipped model run on ONNX Runtime, never importing
TensorFlow or Keras (which take seconds), checked in a fresh process."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
from PIL import Image

from digitlab.inference.predictor import Predictor
from digitlab.inference.pretrained import pretrained_model_path, pretrained_onnx_path

_VERB_THEN_MODULES = """
import sys
from digitlab.cli import app
try:
    app(sys.argv[1:])
except SystemExit as exit:
    assert not exit.code, exit.code
print(sorted(name for name in sys.modules if name.split('.')[0] in ('tensorflow', 'keras')))
"""


def _loaded_heavy_modules(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _VERB_THEN_MODULES, *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def test_predict_and_read_never_import_tensorflow(mnist, tmp_path):
    _, (x_test, _) = mnist
    path = tmp_path / "one.png"
    Image.fromarray(255 - x_test[0]).save(path)
    assert _loaded_heavy_modules("predict", str(path)) == "[]"
    assert _loaded_heavy_modules("read", str(path)) == "[]"


def test_the_shipped_keras_path_runs_its_onnx_copy():
    assert Predictor.load().runtime == "ONNX Runtime"
    assert Predictor.load(pretrained_model_path()).name.startswith(pretrained_onnx_path().name)


def test_a_users_keras_file_runs_in_keras_even_beside_an_onnx(mnist, tmp_path):
    _, (x_test, _) = mnist
    model = tmp_path / "model.keras"
    shutil.copy(pretrained_model_path(), model)
    shutil.copy(pretrained_onnx_path(), tmp_path / "model.onnx")
    keras_predictor = Predictor.load(model)
    assert keras_predictor.runtime == "Keras"
    onnx = Predictor.load(tmp_path / "model.onnx").predict(x_test[:200])
    np.testing.assert_allclose(
        keras_predictor.predict(x_test[:200]).probabilities, onnx.probabilities, atol=1e-4
    )
