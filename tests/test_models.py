"""The model registry: every model builds, trains a step, saves and loads with plain Keras."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from digitlab.errors import ConfigError
from digitlab.models import MODELS, build_model, list_models


def test_registry_lists_the_three_models():
    assert list_models() == ["mlp", "cnn", "resnet", "strided"]
    assert set(MODELS) == {"mlp", "cnn", "resnet", "strided"}


def test_unknown_model_name_lists_the_valid_names():
    with pytest.raises(ConfigError, match="unknown model 'vgg'.*mlp, cnn, resnet"):
        build_model("vgg")


def test_unknown_model_option_is_a_config_error_naming_it():
    with pytest.raises(ConfigError, match="unknown option.*widths.*valid: hidden_units"):
        build_model("mlp", widths=(10,))


def test_mlp_options_change_the_architecture():
    model = build_model("mlp", hidden_units=(64, 32), dropout=0.1)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [64, 32, 10]
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers) == 2
    assert sum(isinstance(layer, keras.layers.Dropout) for layer in model.layers) == 2


@pytest.mark.parametrize("name", list_models())
def test_model_takes_raw_pixels_and_returns_probabilities(name, mnist):
    (x_train, _), _ = mnist
    model = build_model(name, num_classes=7)
    pixels = x_train[:16]
    probabilities = model.predict(pixels, verbose=0)
    assert probabilities.shape == (16, 7)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    # uint8 and float 0..255 inputs are the same thing to the model: it scales them itself.
    from_float = model.predict(pixels.astype("float32"), verbose=0)
    np.testing.assert_allclose(probabilities, from_float, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_every_model_fits_saves_and_loads_in_plain_keras(tmp_path, mnist):
    (x_train, y_train), _ = mnist
    expected = {}
    for name in list_models():
        model = build_model(name)
        # XLA compilation of three models would take most of this test; fit is what matters.
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", jit_compile=False)
        before = model.get_weights()[-1].copy()
        model.fit(x_train[:128], y_train[:128], batch_size=64, epochs=1, verbose=0)
        assert not np.allclose(before, model.get_weights()[-1]), f"{name} did not train"
        path = tmp_path / f"{name}.keras"
        model.save(path)
        expected[name] = model.predict(x_train[:8], verbose=0).tolist()
    np.save(tmp_path / "pixels.npy", x_train[:8])

    # A process that never imports digitlab: the saved files must be plain Keras.
    script = f"""
import json, sys, keras, numpy as np
pixels = np.load({str(tmp_path / "pixels.npy")!r})
out = {{}}
for name in {list_models()!r}:
    model = keras.models.load_model({str(tmp_path)!r} + f"/{{name}}.keras", safe_mode=True)
    out[name] = model.predict(pixels, verbose=0).tolist()
print(json.dumps({{"digitlab_imported": "digitlab" in sys.modules, "out": out}}))
"""
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300
    )
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["digitlab_imported"] is False
    for name in list_models():
        np.testing.assert_allclose(result["out"][name], expected[name], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_shipped_model_loads_in_plain_keras_and_reaches_its_accuracy(mnist):
    from digitlab.inference.pretrained import pretrained_model_path

    path = pretrained_model_path()
    assert path.suffix == ".keras" and path.stat().st_size < 4_000_000
    _, (x_test, y_test) = mnist
    model = keras.models.load_model(path, safe_mode=True, compile=False)
    outputs = model.predict(x_test, batch_size=1000, verbose=0)
    # Ten digit probabilities, then the digit score (docs/models.md, "Not a digit").
    assert outputs.shape == (len(x_test), 11)
    np.testing.assert_allclose(outputs[:, :10].sum(axis=1), 1, atol=1e-4)
    assert ((outputs[:, 10] >= 0) & (outputs[:, 10] <= 1)).all()
    assert (outputs[:, :10].argmax(axis=1) == y_test).mean() >= 0.995
