"""`digitlab finetune` and `digitlab.finetune`: a person's digits taught to a trained model."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from cli_run import assert_one_line_error, run
from digitlab import finetune
from digitlab.atomic import atomic_path
from digitlab.data.folders import export_image_folder
from digitlab.images import to_mnist
from digitlab.inference.predictor import Predictor
from digitlab.inference.pretrained import pretrained_model_path
from digitlab.styles import pen_strokes
from digitlab.training.continental_head import HEAD_NAME
from digitlab.training.finetune import NEIGHBOURS, NEIGHBOURS_OF_READ, replay_anchors
from digitlab.training.finetune_model import (
    EpochMixer,
    freeze_for_finetuning,
    frozen_copy,
    nearest_images,
)
from digitlab.training.person_digits import split_person_digits
from digitlab.writers import open_four, write_writer


@pytest.fixture(scope="module")
def person_dir(mnist, tmp_path_factory) -> Path:
    """Three real MNIST training digits of each label, as a person's PNG files."""
    (x_train, y_train), _ = mnist
    picks = np.concatenate([np.flatnonzero(y_train == label)[:3] for label in range(10)])
    root = tmp_path_factory.mktemp("person") / "digits"
    export_image_folder(x_train[picks], y_train[picks], root)
    return root


def test_finetune_cli_writes_a_run_folder_whose_onnx_copy_matches_keras(
    tiny_model_path, person_dir, mnist, tmp_path
):
    out = tmp_path / "run"
    result = run(
        "finetune", str(tiny_model_path), str(person_dir), "--out", str(out),
        "--epochs", "1", "--replay", "64",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Your held-out digits: " in result.stdout and "MNIST test set: " in result.stdout
    for name in ("config.json", "history.csv", "curves.png", "summary.json", "model.keras"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["person_images"] == {"train": 20, "held_out": 10}
    assert 0.0 <= summary["after"]["mnist"] <= 1.0 and summary["epochs_completed"] == 1
    _, (x_test, _) = mnist
    keras_answers = Predictor.load(out / "model.keras").predict(x_test[:200])
    onnx_answers = Predictor.load(out / "model.onnx").predict(x_test[:200])
    np.testing.assert_allclose(onnx_answers.probabilities, keras_answers.probabilities, atol=1e-4)


def test_finetune_refuses_a_run_folder_that_is_not_empty(tiny_model_path, person_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = run("finetune", str(tiny_model_path), str(person_dir), "--out", str(out))
    assert_one_line_error(result, str(out), "not empty")
    assert [path.name for path in out.iterdir()] == ["notes.txt"]


def test_finetune_reports_a_missing_data_folder_in_one_line(tiny_model_path, tmp_path):
    missing = tmp_path / "nowhere"
    result = run("finetune", str(tiny_model_path), str(missing), "--out", str(tmp_path / "run"))
    assert_one_line_error(result, str(missing), "no such folder")
    assert not (tmp_path / "run").exists()


def test_finetune_reports_digit_folders_without_images_in_one_line(tiny_model_path, tmp_path):
    data = tmp_path / "digits"
    (data / "3").mkdir(parents=True)
    (data / "7").mkdir()
    result = run("finetune", str(tiny_model_path), str(data), "--out", str(tmp_path / "run"))
    assert_one_line_error(result, str(data), "no images")


def test_finetune_reports_a_folder_that_is_not_a_digit_in_one_line(
    tiny_model_path, person_dir, tmp_path
):
    data = tmp_path / "digits"
    (data / "seven").mkdir(parents=True)
    sample = next((person_dir / "7").iterdir())
    (data / "seven" / "a.png").write_bytes(sample.read_bytes())
    result = run("finetune", str(tiny_model_path), str(data), "--out", str(tmp_path / "run"))
    assert_one_line_error(result, str(data / "seven"), "not a digit label")


def test_finetune_reports_an_unreadable_image_by_name_in_one_line(tiny_model_path, tmp_path):
    damaged = tmp_path / "digits" / "4" / "scan.png"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    result = run(
        "finetune", str(tiny_model_path), str(damaged.parents[1]), "--out", str(tmp_path / "run")
    )
    assert_one_line_error(result, str(damaged))


def test_split_keeps_at_least_one_image_of_each_label_to_learn_from():
    x = np.zeros((7, 28, 28), np.uint8)
    y = np.array([0, 1, 1, 2, 2, 2, 2], np.uint8)
    split = split_person_digits(x, y, held_out_fraction=0.5, seed=0)
    assert sorted(split.y_train.tolist()) == [0, 1, 2, 2]
    assert sorted(split.y_held.tolist()) == [1, 2, 2]


def _with_not_digit_head(digits: keras.Model) -> keras.Model:
    """`digits` (10 probabilities) with an 11th column: a sigmoid "digit score" computed from
    the input of its last Dense layer, the contract's not-a-digit head."""
    features = digits.layers[-1].input
    score = keras.layers.Dense(1, activation="sigmoid", name="digit_score")(features)
    outputs = keras.layers.Concatenate()([digits.output, score])
    return keras.Model(digits.inputs, outputs)


def test_finetune_teaches_a_habit_and_leaves_the_not_digit_head_alone(mnist, model_path, tmp_path):
    (x_train, y_train), _ = mnist
    mlp = keras.saving.load_model(model_path)
    with_head = tmp_path / "mlp-with-head.keras"
    with atomic_path(with_head) as staged:
        _with_not_digit_head(mlp).save(staged)
    data = tmp_path / "slashed"
    write_writer(data, "continental", x_train[50000:], y_train[50000:], 8, seed=0)
    zeros = np.stack([to_mnist(path) for path in sorted((data / "0").iterdir())])

    def zeros_read_right(path: Path) -> float:
        probabilities = keras.saving.load_model(path).predict(zeros, verbose=0)
        return float(np.mean(np.argmax(probabilities[:, :10], axis=1) == 0))

    result = finetune(
        with_head, data, tmp_path / "run", epochs=3, replay=200, learning_rate=1e-3,
        held_out_fraction=0.0,
    )  # fmt: skip
    read_before, read_after = zeros_read_right(with_head), zeros_read_right(result.model_path)
    assert read_before <= 0.25 and read_after >= 0.625, (read_before, read_after)
    before, after = keras.saving.load_model(with_head), keras.saving.load_model(result.model_path)
    head_before = before.get_layer("digit_score").get_weights()
    for old, new in zip(head_before, after.get_layer("digit_score").get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
    digit_layer = mlp.layers[-1].name
    digit_kernel_moved = np.abs(
        after.get_layer(digit_layer).get_weights()[0]
        - before.get_layer(digit_layer).get_weights()[0]
    )
    assert digit_kernel_moved.max() > 0.01
    assert result.before.person is None and 0.5 < result.after.mnist <= 1.0


def test_replayed_digits_are_taught_the_models_own_answers_and_the_persons_their_labels(
    mnist, model_path
):
    (x_train, y_train), _ = mnist
    model = keras.saving.load_model(model_path)
    teacher = frozen_copy(model)
    # The person's labels are none the model would give, so their targets cannot pass for its.
    person = (x_train[:6], (y_train[:6] + 1) % 10)
    neighbours = np.array([100, 101])
    mixer = EpochMixer(person, x_train[:300], teacher, neighbours, 30, 0.5, 64, 0)
    x, targets = mixer[0]
    answers = teacher(x)
    replayed = np.all(np.abs(targets - answers) < 1e-6, axis=1)
    assert replayed.sum() == 30 and len(targets) == 60
    np.testing.assert_array_equal(targets[~replayed].max(axis=1), 1.0)
    np.testing.assert_array_equal(targets[~replayed].sum(axis=1), 1.0)
    # The teacher stays as it was while the model it was copied from changes.
    model.layers[-1].set_weights([weights * 0 for weights in model.layers[-1].get_weights()])
    np.testing.assert_allclose(teacher(x), answers, atol=1e-6)


def test_nearest_images_finds_each_persons_digit_among_other_writers(mnist, model_path):
    (x_train, _), _ = mnist
    model = keras.saving.load_model(model_path)
    pool = x_train[1000:1500].copy()
    person = x_train[:4]
    pool[[17, 230, 301, 450]] = person
    found = nearest_images(model, person, pool, per_image=1)
    assert found.tolist() == [17, 230, 301, 450]
    assert len(nearest_images(model, person, pool, per_image=5)) > 4


def test_open_four_parts_the_upper_strokes_and_keeps_the_foot(mnist):
    (x_train, y_train), _ = mnist
    rng = np.random.default_rng(0)
    for index in np.flatnonzero(y_train == 4)[:5]:
        ink = pen_strokes(x_train[index], 5)
        opened = open_four(ink, rng)
        margin = opened.shape[1] - ink.shape[1]
        foot = int(ink.shape[0] * 0.7)
        np.testing.assert_allclose(opened[foot:, margin:], ink[foot:], atol=1e-5)
        top_left = np.flatnonzero(opened[: ink.shape[0] // 5].max(axis=0) > 0.3).min()
        assert (
            top_left < margin + np.flatnonzero(ink[: ink.shape[0] // 5].max(axis=0) > 0.3).min() - 3
        )


def test_only_the_last_stages_and_never_batch_norm_are_left_to_train(mnist):
    model = keras.saving.load_model(pretrained_model_path())
    assert HEAD_NAME in [layer.name for layer in model.layers]  # its continental-1 head
    freeze_for_finetuning(model, np.zeros((2, 28, 28), np.float32), trainable_layers=3)
    trainable = [layer.name for layer in model.layers if layer.trainable_variables]
    assert trainable == ["conv3a", "conv3b", "logits"]
    # The shipped model's not-a-digit branch is a model inside it, reading the classifier's
    # features: neighbours are found in the classifier's own features, not the branch's.
    (x_train, _), _ = mnist
    pool = x_train[1000:1200].copy()
    pool[[5, 150]] = x_train[:2]
    found = nearest_images(model, x_train[:2], pool, per_image=1)
    assert found.tolist() == [5, 150]


def test_replay_anchors_are_the_misread_digits_or_all_when_none_is():
    images = np.arange(4 * 28 * 28, dtype=np.uint8).reshape(4, 28, 28)
    labels = np.array([1, 2, 3, 4])
    anchors, per_anchor = replay_anchors(images, labels, np.array([1, 7, 3, 4]))
    np.testing.assert_array_equal(anchors, images[[1]])
    assert per_anchor == NEIGHBOURS
    anchors, per_anchor = replay_anchors(images, labels, labels)
    np.testing.assert_array_equal(anchors, images)
    assert per_anchor == NEIGHBOURS_OF_READ
