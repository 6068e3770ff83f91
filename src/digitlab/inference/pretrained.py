"""The model shipped inside the package: the default for prediction and serving."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from digitlab.errors import ModelError

PRETRAINED_FILE = "digits_cnn.keras"
PRETRAINED_ONNX_FILE = "digits_cnn.onnx"


def pretrained_model_path() -> Path:
    """The path of the shipped `.keras` model (a `cnn` trained on MNIST with augmentation).

    It takes raw 28x28 pixels (0..255) and returns 10 digit probabilities; load it with
    `digitlab.load_keras_model` or plain `keras.models.load_model`. Raises `ModelError`
    when the file is missing from the installation.
    """
    return _shipped_file(PRETRAINED_FILE)


def pretrained_onnx_path() -> Path:
    """The path of the same shipped model exported to ONNX (float32), what `digitlab serve`
    runs by default.

    It was written by `digitlab export`, whose check found its probabilities within 1e-4 of
    the `.keras` model's (tests/test_predict.py checks it again). ONNX Runtime answers one
    image in about a fifth of the time Keras takes. Raises `ModelError` when it is missing.
    """
    return _shipped_file(PRETRAINED_ONNX_FILE)


def _shipped_file(name: str) -> Path:
    path = Path(str(resources.files("digitlab") / "pretrained" / name))
    if not path.is_file():
        raise ModelError(f"{path}: the shipped model is missing; reinstall digitlab")
    return path
