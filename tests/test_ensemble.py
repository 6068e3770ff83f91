"""`digitlab ensemble`: trained runs averaged into one self-contained model, on real MNIST."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from digitlab.cli import app
from digitlab.inference.digit_score import split_outputs
from digitlab.inference.modelfile import load_keras_model
from digitlab.models import build_model
from digitlab.training.config import TrainConfig
from digitlab.training.loop import train

runner = CliRunner()

# The members are two real training runs.
pytestmark = pytest.mark.slow

# Rows, columns each TTA view moves the digit by, applied here with numpy alone.
SHIFTS = [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)]


def _invoke(*args: object):
    return runner.invoke(app, [str(arg) for arg in args])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    """Two small MLP run folders (about 90% test accuracy each), different seeds."""
    root = tmp_path_factory.mktemp("runs")
    config = TrainConfig(
        model="mlp",
        epochs=3,
        batch_size=32,
        limit=3000,
        lr_schedule="constant",
        model_options={"hidden_units": [64]},
        augment=False,
    )
    return [
        train(config.model_copy(update={"seed": seed}), out=root / f"mlp-{seed}", verbose=0).run_dir
        for seed in (0, 1)
    ]


@pytest.fixture(scope="module")
def ensembles(runs, tmp_path_factory) -> dict[bool, tuple[Path, str]]:
    """tta -> (the ensemble file built by the CLI, the CLI's output)."""
    folder = tmp_path_factory.mktemp("ensembles")
    built = {}
    for tta in (False, True):
        out = folder / ("tta.keras" if tta else "plain.keras")
        result = _invoke("ensemble", *runs, "--out", out, "--tta" if tta else "--no-tta")
        assert result.exit_code == 0, result.output
        built[tta] = (out, result.stdout)
    return built


@pytest.fixture(scope="module")
def members(runs):
    return [load_keras_model(run / "model.keras") for run in runs]


@pytest.fixture(scope="module")
def held_out(mnist) -> tuple[np.ndarray, np.ndarray]:
    _, (x_test, y_test) = mnist
    return x_test[:2000], y_test[:2000]


def _probabilities(model, images: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(images.astype(np.float32), batch_size=1000, verbose=0))


def _shifted(images: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """`images` moved by (rows, columns), zeros filling the vacated edge."""
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))
    return padded[:, 1 - rows : 29 - rows, 1 - columns : 29 - columns]


def test_ensemble_prints_members_views_parameters_and_output(ensembles, runs, members):
    plain_output = ensembles[False][1]
    tta_path, tta_output = ensembles[True]
    for number, run in enumerate(runs, start=1):
        assert f"member_{number}  mlp  {run / 'model.keras'}" in tta_output
    assert "views per member: 1 (original)" in plain_output
    assert "views per member: 5 (original, up, down, left, right)" in tta_output
    assert f"parameters: {sum(model.count_params() for model in members):,}" in tta_output
    assert f"wrote {tta_path}" in tta_output


def test_ensemble_averages_member_probabilities(ensembles, members, held_out):
    images = held_out[0][:500]
    each = [_probabilities(model, images) for model in members]
    # Different seeds give different models, so a wrong average would show.
    assert np.abs(each[0] - each[1]).max() > 0.05
    ensemble = load_keras_model(ensembles[False][0])
    np.testing.assert_allclose(_probabilities(ensemble, images), np.mean(each, axis=0), atol=1e-5)


def test_ensemble_tta_averages_every_member_over_shifted_views(ensembles, members, held_out):
    images = held_out[0][:500]
    expected = np.mean(
        [_probabilities(model, _shifted(images, *shift)) for model in members for shift in SHIFTS],
        axis=0,
    )
    ensemble = load_keras_model(ensembles[True][0])
    probabilities = _probabilities(ensemble, images)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    # The views matter: TTA is not the plain average again.
    plain = _probabilities(load_keras_model(ensembles[False][0]), images)
    assert np.abs(probabilities - plain).max() > 1e-2
    # Deterministic: a second call gives the identical answer.
    np.testing.assert_array_equal(_probabilities(ensemble, images), probabilities)


def _accuracy(model, images: np.ndarray, labels: np.ndarray) -> float:
    probabilities, _ = split_outputs(_probabilities(model, images))
    return float(np.mean(probabilities.argmax(axis=1) == labels))


def test_tta_shifted_views_keep_a_trained_models_accuracy(held_out):
    """The shipped cnn (trained with shift augmentation) reads every one-pixel view as well."""
    from digitlab.inference.pretrained import pretrained_model_path

    images, labels = held_out[0][:1000], held_out[1][:1000]
    model = load_keras_model(pretrained_model_path())
    original = _accuracy(model, images, labels)
    assert original > 0.98
    for shift in SHIFTS[1:]:
        assert _accuracy(model, _shifted(images, *shift), labels) >= original - 0.01, shift


def test_tta_ensemble_is_as_accurate_as_the_plain_one(ensembles, held_out):
    # The small members never saw shifted digits in training, and TTA still does not hurt.
    accuracies = [_accuracy(load_keras_model(ensembles[tta][0]), *held_out) for tta in (0, 1)]
    assert accuracies[0] > 0.85
    assert accuracies[1] >= accuracies[0] - 0.005, accuracies


def test_ensemble_loads_with_plain_keras_safe_mode_without_digitlab(ensembles, held_out, tmp_path):
    path = ensembles[True][0]
    images = held_out[0][:200].astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    script = textwrap.dedent(
        f"""
        import sys
        import keras
        import numpy as np
        model = keras.models.load_model({str(path)!r}, safe_mode=True)
        images = np.load({str(tmp_path / "images.npy")!r})
        np.save({str(tmp_path / "out.npy")!r}, model.predict(images, verbose=0))
        assert not any(name.startswith("digitlab") for name in sys.modules), "digitlab imported"
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    expected = _probabilities(load_keras_model(path), images)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-6)


def test_evaluate_accepts_the_ensemble(ensembles, members, mnist):
    _, (x_test, y_test) = mnist
    path = ensembles[False][0]
    result = _invoke("evaluate", path)
    assert result.exit_code == 0, result.output
    averaged = np.mean([_probabilities(model, x_test) for model in members], axis=0)
    assert f"accuracy: {np.mean(averaged.argmax(axis=1) == y_test):.4f}" in result.stdout


def test_ensemble_exports_to_onnx_matching_keras(ensembles, held_out, tmp_path):
    import onnxruntime

    path = ensembles[True][0]
    onnx_path = tmp_path / "ensemble.onnx"
    result = _invoke("export", path, "--format", "onnx", "--out", onnx_path)
    assert result.exit_code == 0, result.output
    assert "top-1 agrees on 1000/1000" in result.stdout and result.stdout.rstrip().endswith("OK")

    images = held_out[0][:500].astype(np.float32)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_probabilities = session.run(None, {session.get_inputs()[0].name: images})[0]
    expected = _probabilities(load_keras_model(path), images)
    np.testing.assert_allclose(onnx_probabilities, expected, atol=1e-5)


def _save(model, path: Path) -> Path:
    model.save(path)
    return path


@pytest.fixture
def misfits(runs, tmp_path) -> dict[str, Path]:
    """A run with other class names, models with 5 classes or 20x20 input, an existing file."""
    renamed = tmp_path / "renamed-run"
    shutil.copytree(runs[1], renamed)
    summary = json.loads((renamed / "summary.json").read_text())
    summary["class_names"] = [f"class {name}" for name in summary["class_names"]]
    (renamed / "summary.json").write_text(json.dumps(summary))
    existing = tmp_path / "existing.keras"
    existing.write_bytes(b"a user's file")
    (tmp_path / "empty").mkdir()
    return {
        "renamed": renamed,
        "five_classes": _save(
            build_model("mlp", num_classes=5, hidden_units=[8]), tmp_path / "five.keras"
        ),
        "small_input": _save(
            build_model("mlp", hidden_units=[8], image_shape=(20, 20)), tmp_path / "small.keras"
        ),
        "existing": existing,
        "missing": tmp_path / "nope.keras",
        "empty_folder": tmp_path / "empty",
    }


@pytest.mark.parametrize(
    ("members_of", "out", "message"),
    [
        (lambda runs, misfit: [runs[0]], "new", "an ensemble needs at least 2 models, got 1"),
        (
            lambda runs, misfit: [runs[0], misfit["renamed"]],
            "new",
            "{renamed}/summary.json: class names class 0, class 1",
        ),
        (
            lambda runs, misfit: [runs[0], misfit["five_classes"]],
            "new",
            "{five_classes}: predicts 5 classes but {run0}/model.keras predicts 10",
        ),
        (
            lambda runs, misfit: [runs[0], misfit["small_input"]],
            "new",
            "{small_input}: takes input (20, 20) but {run0}/model.keras takes (28, 28)",
        ),
        (
            lambda runs, misfit: [runs[0], misfit["missing"]],
            "new",
            "{missing}: no such run folder or model file",
        ),
        (
            lambda runs, misfit: [runs[0], misfit["empty_folder"]],
            "new",
            "{empty_folder}: no model.keras in this folder",
        ),
        (lambda runs, misfit: [runs[0], runs[0]], "new", "{run0}/model.keras: given twice"),
        (lambda runs, misfit: runs, "existing", "{existing}: already exists; use --force"),
    ],
    ids=[
        "one-member",
        "class-names",
        "class-count",
        "input-shape",
        "missing-file",
        "folder-without-model",
        "same-run-twice",
        "existing-out",
    ],
)
def test_ensemble_errors_are_one_line_and_write_nothing(
    runs, misfits, tmp_path, members_of, out, message
):
    out_path = misfits["existing"] if out == "existing" else tmp_path / "new.keras"
    result = _invoke("ensemble", *members_of(runs, misfits), "--out", out_path)
    assert result.exit_code == 1
    names = {name: str(path) for name, path in misfits.items()} | {"run0": str(runs[0])}
    assert result.stderr.startswith(f"Error: {message.format(**names)}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "new.keras").exists()
    assert misfits["existing"].read_bytes() == b"a user's file"


def test_build_ensemble_takes_sequential_models_and_leaves_them_unchanged(held_out):
    import keras

    from digitlab.errors import ModelError
    from digitlab.inference.ensemble import build_ensemble

    def sequential(seed: int) -> keras.Model:
        keras.utils.set_random_seed(seed)
        return keras.Sequential(
            [
                keras.Input((28, 28)),
                keras.layers.Rescaling(1 / 255),
                keras.layers.Flatten(),
                keras.layers.Dense(10, activation="softmax"),
            ],
            name="linear",
        )

    models = [sequential(0), sequential(1)]
    images = held_out[0][:100]
    ensemble = build_ensemble(models, tta=True, name="linear_pair")
    expected = np.mean(
        [_probabilities(model, _shifted(images, *shift)) for model in models for shift in SHIFTS],
        axis=0,
    )
    np.testing.assert_allclose(_probabilities(ensemble, images), expected, atol=1e-5)
    assert [model.name for model in models] == ["linear", "linear"]
    assert ensemble.name == "linear_pair"
    with pytest.raises(ModelError, match="the same model object is given twice"):
        build_ensemble([models[0], models[0]])
