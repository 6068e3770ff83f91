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


def _dense(path, input_shape):
    layers = [keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")]
    return _keras_model(path, input_shape, *layers)


INPUT_MESSAGE = "the model takes input of shape N x 32 x 32, not N x 28 x 28 images"
OUTPUT_MESSAGE = "the model answers a 1 x 28 x 28 image with shape 1 x 28 x 28, not 1 x classes"


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("big.onnx", lambda path: _onnx_identity(path, ["N", 32, 32]), INPUT_MESSAGE),
        ("identity.onnx", lambda path: _onnx_identity(path, ["N", 28, 28]), OUTPUT_MESSAGE),
        ("big.keras", lambda path: _dense(path, (32, 32)), INPUT_MESSAGE),
        (
            "identity.keras",
            lambda path: _keras_model(path, (28, 28), keras.layers.Identity()),
            OUTPUT_MESSAGE,
        ),
    ],
    ids=["onnx-32x32", "onnx-identity", "keras-32x32", "keras-identity"],
)
def test_a_model_of_the_wrong_shape_is_refused_naming_file_and_shapes(
    tmp_path, name, make, message
):
    path = make(tmp_path / name)
    with pytest.raises(ModelError) as raised:
        Predictor.load(path)
    assert str(raised.value) == f"{path}: {message}"


def test_predict_with_a_model_of_the_wrong_shape_is_a_one_line_error(tmp_path, mnist):
    _, (x_test, _) = mnist
    Image.fromarray(255 - x_test[0]).save(tmp_path / "digit.png")
    model = _onnx_identity(tmp_path / "big.onnx", ["N", 32, 32])
    result = CliRunner().invoke(
        app, ["predict", str(tmp_path / "digit.png"), "--model", str(model)]
    )
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.stderr.strip() == f"Error: {model}: {INPUT_MESSAGE}"


def test_a_model_of_the_right_shape_still_loads_and_predicts(tmp_path, mnist):
    predictor = Predictor.load(_dense(tmp_path / "fits.keras", (28, 28)))
    _, (x_test, _) = mnist
    assert predictor.num_classes == 10
    assert predictor.predict(x_test[:3]).probabilities.shape == (3, 10)
    assert np.allclose(predictor.predict(x_test[:3]).probabilities.sum(axis=1), 1, atol=1e-5)
