"""Evaluation: metrics that match an independent computation, aligned on shuffled input,
the report files, and one-line errors for bad models and data."""

from __future__ import annotations

import json
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from typer.testing import CliRunner

from digitlab.cli.app import app
from digitlab.errors import DataError, ModelError
from digitlab.evaluation import REPORT_FILES, evaluate
from trained_models import build_tiny_model

NUM_TEST = 2000


@pytest.fixture(scope="module")
def tiny_model(tiny_model_path) -> keras.Model:
    return keras.models.load_model(tiny_model_path)


@pytest.fixture(scope="module")
def held_out(mnist) -> tuple[np.ndarray, np.ndarray]:
    _, (x_test, y_test) = mnist
    return x_test[:NUM_TEST], y_test[:NUM_TEST]


def independent_metrics(probabilities: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy, loss, confusion matrix, precision and recall in plain NumPy, no scikit-learn."""
    predictions = probabilities.argmax(axis=1)
    confusion = np.zeros((10, 10), dtype=int)
    np.add.at(confusion, (labels, predictions), 1)
    diagonal = np.diag(confusion)
    return {
        "accuracy": float(np.mean(predictions == labels)),
        "loss": float(
            np.mean(-np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0)))
        ),
        "confusion": confusion,
        "precision": diagonal / np.maximum(confusion.sum(axis=0), 1),
        "recall": diagonal / confusion.sum(axis=1),
    }


def test_evaluate_report_matches_independent_computation(tiny_model_path, tiny_model, held_out):
    x, y = held_out
    result = evaluate(tiny_model_path, x, y)
    truth = independent_metrics(tiny_model.predict(x, verbose=0), y)

    # A well-fitted model: an aligned report must be far above the 10% of a misaligned one.
    assert result.accuracy > 0.8
    assert result.accuracy == pytest.approx(truth["accuracy"], abs=1e-12)
    assert result.loss == pytest.approx(truth["loss"], rel=1e-4)
    np.testing.assert_array_equal(result.confusion, truth["confusion"])
    for digit in range(10):
        scores = result.report[str(digit)]
        assert scores["precision"] == pytest.approx(truth["precision"][digit])
        assert scores["recall"] == pytest.approx(truth["recall"][digit])
        assert scores["support"] == int(np.sum(y == digit))
    assert result.report["macro avg"]["recall"] == pytest.approx(truth["recall"].mean())
    assert result.model_path == str(tiny_model_path)


def test_evaluate_loss_matches_keras_cross_entropy(tiny_model, held_out):
    x, y = held_out
    keras_loss = keras.losses.SparseCategoricalCrossentropy()(y, tiny_model.predict(x, verbose=0))
    assert evaluate(tiny_model, x, y).loss == pytest.approx(float(keras_loss), rel=1e-4)


def test_evaluate_aligns_labels_on_reshuffling_tf_data_pipeline(tiny_model, held_out):
    x, y = held_out
    unshuffled = evaluate(tiny_model, x, y)
    pipeline = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(len(x), seed=1, reshuffle_each_iteration=True)
        .batch(128)
    )
    # The original bug, reproduced: predictions from one pass, labels from another.
    two_pass_predictions = tiny_model.predict(pipeline, verbose=0).argmax(axis=1)
    two_pass_labels = np.concatenate([labels.numpy() for _, labels in pipeline])
    assert np.mean(two_pass_predictions == two_pass_labels) < 0.3

    result = evaluate(tiny_model, pipeline)

    assert result.num_images == len(x)
    assert not np.array_equal(result.labels, y)  # it really was shuffled
    assert result.accuracy == pytest.approx(unshuffled.accuracy, abs=1e-12)
    np.testing.assert_array_equal(result.confusion, unshuffled.confusion)
    # Each kept image is the one its label and prediction belong to.
    np.testing.assert_allclose(
        result.probabilities, tiny_model.predict(result.images, verbose=0), atol=1e-5
    )
    assert result.report_text == unshuffled.report_text


def test_evaluate_refuses_separate_labels_for_a_batched_pipeline(tiny_model, held_out):
    x, y = held_out
    pipeline = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x)).batch(128)
    with pytest.raises(DataError, match="pass y=None"):
        evaluate(tiny_model, pipeline, y)


def test_evaluate_on_shuffled_arrays_gives_the_same_report(tiny_model, held_out):
    x, y = held_out
    order = np.random.default_rng(7).permutation(len(x))
    plain = evaluate(tiny_model, x, y, batch_size=300)
    shuffled = evaluate(tiny_model, x[order], y[order], batch_size=300)
    np.testing.assert_array_equal(shuffled.confusion, plain.confusion)
    assert shuffled.loss == pytest.approx(plain.loss, rel=1e-5)
    np.testing.assert_array_equal(shuffled.predictions, plain.predictions[order])


def test_evaluate_writes_report_metrics_and_figures(tiny_model_path, held_out, tmp_path):
    x, y = held_out
    out = tmp_path / "evaluation"
    result = evaluate(tiny_model_path, x, y, out=out, dataset_name="mnist")

    assert sorted(path.name for path in out.iterdir()) == sorted(REPORT_FILES)
    assert set(result.files) == set(REPORT_FILES)
    report = (out / "report.txt").read_text()
    for expected in ("accuracy", "macro avg", "weighted avg", "precision", "f1-score", "mnist"):
        assert expected in report
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] == result.accuracy
    assert metrics["dataset"] == "mnist"
    assert metrics["model"] == str(tiny_model_path)
    assert metrics["num_images"] == NUM_TEST
    assert metrics["confusion_matrix"] == result.confusion.tolist()
    assert metrics["per_class"]["3"]["support"] == int(np.sum(y == 3))
    assert set(metrics["macro_avg"]) == {"precision", "recall", "f1", "support"}
    assert metrics["weighted_avg"]["recall"] == pytest.approx(result.accuracy)
    for figure in ("confusion_matrix.png", "misclassified.png"):
        with Image.open(out / figure) as image:
            assert image.format == "PNG"
            assert min(image.size) > 400


def test_most_confident_errors_are_wrong_and_sorted(tiny_model, held_out):
    result = evaluate(tiny_model, *held_out)
    worst = result.most_confident_errors(limit=25)
    assert len(worst) == 25
    assert np.all(result.predictions[worst] != result.labels[worst])
    confidence = result.confidence[worst]
    assert np.all(np.diff(confidence) <= 0)
    wrong = result.predictions != result.labels
    assert confidence[0] == pytest.approx(result.confidence[wrong].max())


def test_evaluate_rejects_model_with_other_number_of_classes(held_out):
    five_class_model = build_tiny_model(num_classes=5)
    with pytest.raises(ModelError, match="predicts 5 classes but the dataset has 10"):
        evaluate(five_class_model, *held_out, class_names=[str(i) for i in range(10)])
    # Without class names the labels give the mismatch away.
    with pytest.raises(DataError, match="label [5-9] is outside the 5 classes"):
        evaluate(five_class_model, *held_out)


def test_evaluate_rejects_corrupt_model_file(held_out, tmp_path):
    corrupt = tmp_path / "model.keras"
    with zipfile.ZipFile(corrupt, "w") as archive:
        archive.writestr("config.json", "{not json")
    with pytest.raises(ModelError, match="model.keras"):
        evaluate(corrupt, *held_out)


def test_evaluate_rejects_images_that_do_not_fit_the_model(tiny_model, held_out):
    x, y = held_out
    with pytest.raises(DataError, match=r"\(784,\) do not fit"):
        evaluate(tiny_model, x.reshape(len(x), -1), y)
    with pytest.raises(DataError, match="2000 images but 1999 labels"):
        evaluate(tiny_model, x, y[:-1])


def test_cli_evaluate_prints_report_and_writes_files(tiny_model_path, tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["evaluate", str(tiny_model_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "accuracy:" in result.stdout and "weighted avg" in result.stdout
    assert "10000 images" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_images"] == 10000
    assert f"accuracy: {metrics['accuracy']:.4f}" in result.stdout


def test_cli_evaluate_names_fashion_mnist_classes(tiny_model_path):
    result = CliRunner().invoke(
        app, ["evaluate", str(tiny_model_path), "--dataset", "fashion-mnist"]
    )
    assert result.exit_code == 0, result.output
    assert "Ankle boot" in result.stdout and "T-shirt/top" in result.stdout


def _assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    error_lines = result.stderr.strip().splitlines()
    assert len(error_lines) == 1 and error_lines[0].startswith("Error:")
    for fragment in fragments:
        assert fragment in error_lines[0]


def test_cli_evaluate_missing_model_is_one_line_error(tmp_path):
    missing = tmp_path / "nope.keras"
    result = CliRunner().invoke(app, ["evaluate", str(missing)])
    _assert_one_line_error(result, str(missing), "no such model file")


def test_cli_evaluate_corrupt_model_is_one_line_error(tmp_path):
    corrupt = tmp_path / "model.keras"
    corrupt.write_bytes(b"this is not a zip archive")
    result = CliRunner().invoke(app, ["evaluate", str(corrupt)])
    _assert_one_line_error(result, str(corrupt))


def test_cli_evaluate_dataset_with_other_classes_is_one_line_error(
    tiny_model_path, mnist, tmp_path
):
    (x_train, y_train), _ = mnist
    tree = tmp_path / "three-digits"
    for digit in (0, 1, 2):
        (tree / str(digit)).mkdir(parents=True)
        for index in np.flatnonzero(y_train == digit)[:14]:
            Image.fromarray(x_train[index]).save(tree / str(digit) / f"{digit}_{index}.png")
    result = CliRunner().invoke(app, ["evaluate", str(tiny_model_path), "--dataset", str(tree)])
    _assert_one_line_error(result, str(tiny_model_path), "10 classes but the dataset has 3")


def test_cli_evaluate_mismatched_classes_is_one_line_error(tmp_path):
    path = tmp_path / "five.keras"
    build_tiny_model(num_classes=5).save(path)
    result = CliRunner().invoke(app, ["evaluate", str(path)])
    _assert_one_line_error(result, str(path), "predicts 5 classes but the dataset has 10")
