"""`--force` replaces only what export writes: never a user's folder, never the input model."""

from __future__ import annotations

import keras
import pytest
from typer.testing import CliRunner

from digitlab.cli import app
from digitlab.errors import ExportError
from digitlab.inference.export import export_model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A tiny untrained model: export only has to agree with it, not to be accurate."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(10, "softmax")]
    )
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    return path


def test_force_does_not_delete_a_folder_of_the_users_files(model_path, tmp_path):
    out = tmp_path / "work"
    (out / "data").mkdir(parents=True)
    (out / "thesis.tex").write_text("three years")
    (out / "data" / "runs.csv").write_text("a,b")

    result = CliRunner().invoke(
        app,
        ["export", str(model_path), "--format", "savedmodel", "--out", str(out), "--force"],
    )

    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.stderr.strip() == (
        f"Error: {out}: not a SavedModel folder that export writes, so even --force will "
        "not replace it"
    )
    assert (out / "thesis.tex").read_text() == "three years"
    assert (out / "data" / "runs.csv").read_text() == "a,b"


def test_force_never_replaces_the_folder_holding_the_input_model(model_path, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    model = folder / "tiny.keras"
    model.write_bytes(model_path.read_bytes())
    (folder / "saved_model.pb").write_bytes(b"looks like an export")
    with pytest.raises(ExportError, match="the model being exported; not replacing it"):
        export_model(model, "savedmodel", folder, force=True)
    assert model.read_bytes() == model_path.read_bytes()


def test_force_does_not_replace_a_folder_named_like_an_onnx_file(model_path, tmp_path):
    out = tmp_path / "digits.onnx"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match=r"digits.onnx: not a .onnx file that export writes"):
        export_model(model_path, "onnx", out, force=True)
    assert (out / "keep.txt").read_text() == "mine"


def test_force_replaces_an_earlier_saved_model_export(model_path, tmp_path):
    out = tmp_path / "digits_savedmodel"
    (out / "variables").mkdir(parents=True)
    (out / "saved_model.pb").write_bytes(b"an earlier export")

    report = export_model(model_path, "savedmodel", out, force=True)

    assert report.passed
    assert (out / "saved_model.pb").read_bytes() != b"an earlier export"
    assert {entry.name for entry in out.iterdir()} <= {
        "saved_model.pb",
        "variables",
        "assets",
        "fingerprint.pb",
    }
