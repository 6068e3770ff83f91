"""export_model: each format checked against Keras by its own runtime, and files handled safely."""

from __future__ import annotations

import numpy as np
import pytest

import digitlab.inference.export
from digitlab.errors import ExportError
from digitlab.inference.export import export_model

PARITY = 1000


@pytest.fixture(scope="module")
def cnn_path(tmp_path_factory, mnist):
    """A small CNN trained for one epoch on 4,000 MNIST images, saved as .keras."""
    import keras

    (x_train, y_train), _ = mnist
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Reshape((28, 28, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.BatchNormalization(),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x_train[:4000], y_train[:4000], epochs=1, batch_size=64, verbose=0)
    path = tmp_path_factory.mktemp("model") / "cnn.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def keras_probabilities(cnn_path, mnist) -> np.ndarray:
    import keras

    _, (x_test, _) = mnist
    model = keras.models.load_model(cnn_path)
    return np.asarray(model(x_test[:PARITY].astype(np.float32), training=False))


def _run_saved_model(path, pixels):
    import tensorflow as tf

    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    (output,) = serve(tf.constant(pixels)).values()
    return output.numpy()


def _run_onnx(path, pixels):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: pixels})[0]


def _run_tflite(path, pixels):
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(path))
    (given,), (wanted,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.resize_tensor_input(given["index"], pixels.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(given["index"], pixels)
    interpreter.invoke()
    return interpreter.get_tensor(wanted["index"])


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")
@pytest.mark.parametrize(
    ("export_format", "name", "run"),
    [
        ("savedmodel", "digits_savedmodel", _run_saved_model),
        ("onnx", "digits.onnx", _run_onnx),
        ("tflite", "digits.tflite", _run_tflite),
    ],
    ids=["savedmodel", "onnx", "tflite"],
)
def test_export_matches_keras_in_an_independent_runtime(
    cnn_path, keras_probabilities, mnist, tmp_path, export_format, name, run
):
    out = tmp_path / name
    report = export_model(cnn_path, export_format, out)

    assert report.passed and report.out == out and report.format == export_format
    assert report.images == PARITY and report.top1_matches == PARITY
    assert report.max_abs_difference <= 1e-4 and report.size_bytes > 0
    assert "OK" in report.summary() and f"{PARITY}/{PARITY}" in report.summary()
    assert out.exists() and sorted(path.name for path in tmp_path.iterdir()) == [name]
    _, (x_test, _) = mnist
    exported = run(out, x_test[:PARITY].astype(np.float32))  # raw pixels, as Keras takes them
    assert np.array_equal(exported.argmax(axis=1), keras_probabilities.argmax(axis=1))
    assert np.abs(exported - keras_probabilities).max() <= 1e-4


def test_export_refuses_to_overwrite_unless_forced(cnn_path, tmp_path):
    out = tmp_path / "digits.onnx"
    out.write_bytes(b"someone's file")
    with pytest.raises(ExportError, match="already exists.*--force"):
        export_model(cnn_path, "onnx", out)
    assert out.read_bytes() == b"someone's file"
    assert export_model(cnn_path, "onnx", out, force=True).passed
    assert out.read_bytes() != b"someone's file"


def test_export_that_fails_its_check_leaves_nothing_behind(cnn_path, tmp_path, monkeypatch):
    monkeypatch.setattr(digitlab.inference.export, "PARITY_TOLERANCE", -1.0)  # no export can pass
    kept = tmp_path / "kept.onnx"
    kept.write_bytes(b"an older export")
    with pytest.raises(ExportError, match="does not match Keras"):
        export_model(cnn_path, "onnx", kept, force=True)
    assert kept.read_bytes() == b"an older export"
    with pytest.raises(ExportError, match="FAILED"):
        export_model(cnn_path, "savedmodel", tmp_path / "new" / "deeper" / "model")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["kept.onnx"]


@pytest.mark.parametrize(
    ("export_format", "name", "message"),
    [("coreml", "m.mlmodel", "unknown export format"), ("onnx", "m.tflite", "must end in .onnx")],
)
def test_export_rejects_unknown_formats_and_wrong_suffixes(
    cnn_path, tmp_path, export_format, name, message
):
    with pytest.raises(ExportError, match=message):
        export_model(cnn_path, export_format, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_int8_onnx_export_is_smaller_and_keeps_the_shipped_models_accuracy(tmp_path, mnist):
    from digitlab.inference.digit_score import split_outputs
    from digitlab.inference.pretrained import pretrained_model_path

    out = tmp_path / "cnn-int8.onnx"
    report = export_model(pretrained_model_path(), "onnx", out, quantize=True)
    assert report.passed and report.tolerance is None and report.required_top1 == 995
    assert "int8" in report.summary()
    _, (x_test, y_test) = mnist
    pixels = x_test[:2000].astype(np.float32)
    probabilities, _ = split_outputs(_run_onnx(out, pixels))  # the shipped model has 11
    int8_accuracy = np.mean(probabilities.argmax(axis=1) == y_test[:2000])
    assert int8_accuracy >= 0.99
    float_size = export_model(pretrained_model_path(), "onnx", tmp_path / "f.onnx").size_bytes
    assert out.stat().st_size < float_size / 2


def test_int8_is_refused_for_formats_other_than_onnx(cnn_path, tmp_path):
    with pytest.raises(ExportError, match="int8 quantization is for onnx exports, not tflite"):
        export_model(cnn_path, "tflite", tmp_path / "m.tflite", quantize=True)
    assert list(tmp_path.iterdir()) == []
