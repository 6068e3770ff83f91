"""Loading a saved Keras model safely, with errors a user can act on."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from digitlab.errors import ModelError

if TYPE_CHECKING:
    import keras


def load_keras_model(path: str | os.PathLike[str]) -> keras.Model:
    """Load a `.keras` model file with Keras's `safe_mode` on (no arbitrary code runs).

    Raises `ModelError` naming the file when it is missing, not a `.keras` archive,
    or cannot be rebuilt.
    """
    import keras

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise ModelError(f"{path}: not a Keras model file (expected a .keras archive)")
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many unrelated types for a bad archive.
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"{path}: cannot load the model ({reason})") from None
