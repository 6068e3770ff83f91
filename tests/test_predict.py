"""Predictor: loading each model kind, batched and single-image prediction, and image files."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from digitlab.errors import ModelError
from digitlab.inference.predictor import (
    FileFailure,
    FilePrediction,
    Predictions,
    Predictor,
    collect_files,
)
from digitlab.styles import render

# `model_path` (conftest.py): a small MLP trained once per session on 12,000 MNIST images.


@pytest.fixture(scope="module")
def predictor(model_path) -> Predictor:
    return Predictor.load(model_path)


def test_predict_returns_digits_and_probabilities(predictor, model_path, mnist):
    _, (x_test, y_test) = mnist
    predictions = predictor.predict(x_test[:1000])
    assert isinstance(predictions, Predictions) and len(predictions) == 1000
    assert predictions.digits.shape == (1000,) and predictions.digits.dtype == np.int64
    assert predictions.probabilities.shape == (1000, 10)
    assert predictions.probabilities.dtype == np.float32
    assert np.allclose(predictions.probabilities.sum(axis=1), 1, atol=1e-5)
    assert np.array_equal(predictions.digits, predictions.probabilities.argmax(axis=1))
    assert (predictions.digits == y_test[:1000]).mean() > 0.9
    assert predictor.num_classes == 10 and model_path.name in predictor.name


def test_predict_accepts_a_single_image(predictor, mnist):
    _, (x_test, _) = mnist
    single = predictor.predict(x_test[0])
    assert single.probabilities.shape == (1, 10)
    assert np.allclose(single.probabilities, predictor.predict(x_test[:1]).probabilities)


def test_predict_in_batches_gives_the_same_answers(model_path, mnist):
    _, (x_test, _) = mnist
    predictor = Predictor.load(model_path)
    whole = predictor.predict(x_test[:300])
    predictor.batch_size = 64
    batched = predictor.predict(x_test[:300])
    assert np.allclose(batched.probabilities, whole.probabilities, atol=1e-6)


def test_predict_rejects_arrays_that_are_not_28x28(predictor):
    with pytest.raises(ModelError, match="28 x 28"):
        predictor.predict(np.zeros((4, 32, 32), np.uint8))


def test_top_k_lists_the_most_likely_digits_first():
    probabilities = np.array([[0.1, 0.6, 0.05, 0.25] + [0.0] * 6], np.float32)
    predictions = Predictions.from_outputs(probabilities)
    assert predictions.top_k(3) == [
        [(1, pytest.approx(0.6)), (3, pytest.approx(0.25)), (0, pytest.approx(0.1))]
    ]
    assert predictions.confidences[0] == pytest.approx(0.6)


def test_logits_are_turned_into_probabilities():
    logits = np.array([[2.0, 0.0, -1.0]], np.float32)
    predictor = Predictor(lambda pixels: np.repeat(logits, len(pixels), axis=0), "logits", "test")
    probabilities = predictor.predict(np.zeros((2, 28, 28), np.uint8)).probabilities
    expected = np.exp(logits) / np.exp(logits).sum()
    assert np.allclose(probabilities, np.repeat(expected, 2, axis=0), atol=1e-6)


def test_predict_files_reports_bad_files_and_predicts_the_rest(predictor, mnist, tmp_path):
    _, (x_test, y_test) = mnist
    rng = np.random.default_rng(0)
    good = []
    for index in range(10):
        data, suffix = render(x_test[index], "black_on_white", rng)
        path = tmp_path / f"digit_{index}{suffix}"
        path.write_bytes(data)
        good.append(path)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "cut.png").write_bytes(good[0].read_bytes()[:300])
    (tmp_path / "blank.png").write_bytes(_blank_png())
    bad = ["empty.png", "notes.txt", "cut.png", "blank.png", "missing.png"]
    paths = [good[0], *(tmp_path / name for name in bad), *good[1:]]

    results = predictor.predict_files(paths)

    assert [result.path for result in results] == paths
    failures = {
        result.path.name: result.reason for result in results if isinstance(result, FileFailure)
    }
    assert sorted(failures) == sorted(bad)
    assert "empty" in failures["empty.png"] and "not an image" in failures["notes.txt"]
    assert "truncated" in failures["cut.png"] or "damaged" in failures["cut.png"]
    assert "no digit found" in failures["blank.png"] and "no such file" in failures["missing.png"]
    assert all(name in reason for name, reason in failures.items())
    predicted = [result for result in results if isinstance(result, FilePrediction)]
    assert len(predicted) == 10
    assert sum(result.digit == y_test[index] for index, result in enumerate(predicted)) >= 8
    assert all(
        result.image.shape == (28, 28) and result.image.dtype == np.uint8 for result in predicted
    )
    assert predicted[0].top_k(2)[0] == (predicted[0].digit, predicted[0].confidence)


def _blank_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (64, 64), 255).save(buffer, format="PNG")
    return buffer.getvalue()


def test_collect_files_walks_folders_and_keeps_named_files(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "2.png").write_bytes(b"x")
    (tmp_path / "a" / "1.png").write_bytes(b"x")
    (tmp_path / "a" / ".hidden.png").write_bytes(b"x")
    files = collect_files([tmp_path / "a", tmp_path / "missing.png"])
    assert files == [
        tmp_path / "a" / "1.png",
        tmp_path / "a" / "b" / "2.png",
        tmp_path / "missing.png",
    ]


def test_onnx_model_predicts_like_keras(model_path, predictor, mnist, tmp_path):
    from digitlab.inference.export import export_model

    onnx_path = tmp_path / "small.onnx"
    export_model(model_path, "onnx", onnx_path)
    onnx_predictor = Predictor.load(onnx_path)
    _, (x_test, _) = mnist
    assert "ONNX Runtime" in onnx_predictor.name and onnx_predictor.runtime == "ONNX Runtime"
    assert np.allclose(
        onnx_predictor.predict(x_test[:200]).probabilities,
        predictor.predict(x_test[:200]).probabilities,
        atol=1e-5,
    )


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("absent.keras", None, "no such model file"),
        ("weights.h5", b"HDF", "unknown model kind"),
        ("broken.onnx", b"not a protobuf", "cannot load the ONNX Runtime model"),
        ("broken.tflite", b"not a flatbuffer", "cannot load the TFLite model"),
        ("broken.keras", b"PK not a zip", "broken.keras"),
    ],
)
def test_load_reports_a_bad_model_path_in_one_sentence(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError, match=message):
        Predictor.load(path)


def test_load_without_a_path_uses_the_shipped_model_in_onnx_runtime(mnist):
    from digitlab.inference.pretrained import pretrained_onnx_path

    shipped = Predictor.load()
    _, (x_test, y_test) = mnist
    assert pretrained_onnx_path().name in shipped.name and shipped.runtime == "ONNX Runtime"
    assert (shipped.predict(x_test[:500]).digits == y_test[:500]).mean() >= 0.99


def test_shipped_onnx_model_gives_the_shipped_keras_models_probabilities(mnist):
    from digitlab.inference.pretrained import pretrained_onnx_path

    _, (x_test, _) = mnist
    keras_probabilities = Predictor.load().predict(x_test[:1000]).probabilities
    onnx = Predictor.load(pretrained_onnx_path())
    assert onnx.runtime == "ONNX Runtime"
    assert np.abs(onnx.predict(x_test[:1000]).probabilities - keras_probabilities).max() < 1e-4


def test_load_refuses_a_folder_that_is_not_a_saved_model(tmp_path):
    with pytest.raises(ModelError, match="saved_model.pb"):
        Predictor.load(tmp_path)
