"""Models of the wrong shape, for each runtime, fail at load with one sentence naming the file
and the shapes, in the library and through `digitlab predict`."""

from __future__ import annotations

import keras
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image
from typer.testing import CliRunner

from digitlab.cli import app
from digitlab.errors import ModelError
from digitlab.inference.predictor import Predictor


def _onnx_identity(path, shape):
    """An ONNX model that returns its float input unchanged, declaring `shape` for it."""
    tensor = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("Identity", ["pixels"], ["same"])],
        "identity",
        [tensor("pixels", TensorProto.FLOAT, shape)],
        [tensor("same", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _keras_model(path, input_shape, *layers):
    inputs = keras.Input(input_shape)
    outputs = inputs
    for layer in layers:
        outputs = layer(outputs)
    keras.Model(inputs, outputs).save(path)
    return path


def test_an_onnx_model_for_32x32_images_is_refused_naming_its_input_shape(tmp_path):
    path = _onnx_identity(tmp_path / "big.onnx", ["N", 32, 32])
    with pytest.raises(ModelError) as raised:
        Predictor.load(path)
    assert str(raised.value) == (
        f"{path}: the model takes input of shape N x 32 x 32, not N x 28 x 28 images"
    )


def test_an_onnx_identity_is_refused_naming_its_output_shape(tmp_path):
    path = _onnx_identity(tmp_path / "identity.onnx", ["N", 28, 28])
    with pytest.raises(ModelError) as raised:
        Predictor.load(path)
    assert str(raised.value) == (
        f"{path}: the model answers a 1 x 28 x 28 image with shape 1 x 28 x 28, not 1 x classes"
    )


def test_a_keras_model_for_32x32_images_is_refused_naming_its_input_shape(tmp_path):
    layers = [keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")]
    path = _keras_model(tmp_path / "big.keras", (32, 32), *layers)
    with pytest.raises(ModelError, match=r"big.keras: the model takes input of shape N x 32 x 32"):
        Predictor.load(path)


def test_a_keras_3d_identity_is_refused_naming_its_output_shape(tmp_path):
    path = _keras_model(tmp_path / "identity.keras", (28, 28), keras.layers.Identity())
    with pytest.raises(ModelError, match=r"identity.keras: .* with shape 1 x 28 x 28, not 1 x "):
        Predictor.load(path)


def test_predict_with_a_model_of_the_wrong_shape_is_a_one_line_error(tmp_path, mnist):
    _, (x_test, _) = mnist
    Image.fromarray(255 - x_test[0]).save(tmp_path / "digit.png")
    model = _onnx_identity(tmp_path / "big.onnx", ["N", 32, 32])
    result = CliRunner().invoke(
        app, ["predict", str(tmp_path / "digit.png"), "--model", str(model)]
    )
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.stderr.strip() == (
        f"Error: {model}: the model takes input of shape N x 32 x 32, not N x 28 x 28 images"
    )


def test_a_model_of_the_right_shape_still_loads_and_predicts(tmp_path, mnist):
    layers = [keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")]
    predictor = Predictor.load(_keras_model(tmp_path / "fits.keras", (28, 28), *layers))
    _, (x_test, _) = mnist
    assert predictor.num_classes == 10
    assert predictor.predict(x_test[:3]).probabilities.shape == (3, 10)
    assert np.allclose(predictor.predict(x_test[:3]).probabilities.sum(axis=1), 1, atol=1e-5)
