"""The model shipped inside the package: the default for prediction and serving."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from digitlab.errors import ModelError

PRETRAINED_FILE = "digits_cnn.keras"


def pretrained_model_path() -> Path:
    """The path of the shipped `.keras` model (a `cnn` trained on MNIST with augmentation).

    It takes raw 28x28 pixels (0..255) and returns 10 digit probabilities; load it with
    `digitlab.load_keras_model` or plain `keras.models.load_model`. Raises `ModelError`
    when the file is missing from the installation.
    """
    path = Path(str(resources.files("digitlab") / "pretrained" / PRETRAINED_FILE))
    if not path.is_file():
        raise ModelError(f"{path}: the shipped model is missing; reinstall digitlab")
    return path
