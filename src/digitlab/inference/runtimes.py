"""The runtimes a model can run in (Keras, SavedModel, ONNX Runtime, TFLite): loading a
model file into a function from pixels to class probabilities (and, for a model that knows
"not a digit", its digit score as an 11th column), checked once at load."""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitlab.errors import ModelError

Runner = Callable[[np.ndarray], np.ndarray]
"""float32 N x 28 x 28 raw pixels -> N x C model outputs."""

InputShape = tuple[int | None, ...]
"""The input shape a model declares; None for a dimension of any size (the batch)."""

Loader = Callable[[Path, int | None], tuple[Runner, InputShape]]

IMAGE_SHAPE = (28, 28)


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to run: its runner, the runtime's name and the file it came from."""

    runner: Runner
    runtime: str
    path: Path


def load_runner(path: Path | None, threads: int | None) -> LoadedModel:
    """Load the model at `path` (None: the shipped one) into its runtime, check its shapes.

    Raises `ModelError` naming the path when it is missing, of an unknown kind or cannot be
    loaded, and naming the shapes when it does not take N x 28 x 28 images to N x classes.
    """
    path = _fastest_copy(path)
    loader, runtime = _loader_for(path)
    try:
        runner, input_shape = loader(path, threads)
    except ModelError:
        raise
    except Exception as error:  # each runtime has its own error types for a bad file
        reason = error_reason(error)
        raise ModelError(f"{path}: cannot load the {runtime} model ({reason})") from None
    _check_shapes(path, runner, input_shape)
    return LoadedModel(runner, runtime, path)


def _loader_for(path: Path) -> tuple[Loader, str]:
    """The runner factory and runtime name for a model path; `ModelError` if none fits."""
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise ModelError(f"{path}: a folder without saved_model.pb is not a SavedModel")
        return _saved_model_runner, "TensorFlow SavedModel"
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    loaders = {
        ".keras": (_keras_file_runner, "Keras"),
        ".onnx": (onnx_runner, "ONNX Runtime"),
        ".tflite": (_tflite_runner, "TFLite"),
    }
    if path.suffix not in loaders:
        raise ModelError(
            f"{path}: unknown model kind (expected .keras, .onnx, .tflite or a SavedModel folder)"
        )
    return loaders[path.suffix]


def _shape_text(shape: Sequence[int | None]) -> str:
    return " x ".join("N" if size is None else str(size) for size in shape)


def _check_shapes(path: Path, runner: Runner, input_shape: InputShape) -> None:
    """Raise `ModelError` unless the model takes N x 28 x 28 and answers N x classes.

    Checked once at load, so a model made for other images fails here, naming the file
    and the shapes, rather than in the runtime at the first request.
    """
    if len(input_shape) != 3 or any(size not in (None, 28) for size in input_shape[1:]):
        raise ModelError(
            f"{path}: the model takes input of shape {_shape_text(input_shape)}, "
            "not N x 28 x 28 images"
        )
    try:
        outputs = np.asarray(runner(np.zeros((1, *IMAGE_SHAPE), np.float32)))
    except Exception as error:  # each runtime has its own error types
        reason = error_reason(error)
        raise ModelError(f"{path}: the model fails on a 1 x 28 x 28 image ({reason})") from None
    if outputs.ndim != 2 or outputs.shape[0] != 1 or outputs.shape[1] < 2:
        raise ModelError(
            f"{path}: the model answers a 1 x 28 x 28 image with shape "
            f"{_shape_text(outputs.shape)}, not 1 x classes"
        )


def _input_shape(dimensions: Iterable[object]) -> InputShape:
    """A runtime's declared shape, with symbolic or unknown sizes (None, "N", -1) as None."""
    return tuple(
        int(size) if isinstance(size, int | np.integer) and size >= 0 else None
        for size in dimensions
    )


def error_reason(error: Exception) -> str:
    """The first line of an exception's message (or its type's name), for one-line errors."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _fastest_copy(path: Path | None) -> Path:
    """The model file to load for `path` (None: the shipped model): the shipped model's
    ONNX copy when `path` is the shipped `.keras` and ONNX Runtime is installed."""
    from digitlab.inference.pretrained import pretrained_model_path, pretrained_onnx_path

    shipped = pretrained_model_path()
    if path is not None and not (path.suffix == ".keras" and _same_file(path, shipped)):
        return path
    if importlib.util.find_spec("onnxruntime") is None:
        return shipped
    return pretrained_onnx_path()


def _same_file(path: Path, other: Path) -> bool:
    try:
        return path.samefile(other)
    except OSError:
        return False


def keras_runner(model: object) -> Runner:
    # `predict_on_batch` reuses one compiled predict function; calling the model eagerly
    # costs about ten times as much for one image.
    return lambda pixels: np.asarray(model.predict_on_batch(pixels))  # type: ignore[attr-defined]


def _keras_file_runner(path: Path, threads: int | None) -> tuple[Runner, InputShape]:
    """Keras runs on its backend's own thread pools; `threads` is not used."""
    from digitlab.inference.modelfile import load_keras_model

    model = load_keras_model(path)
    return keras_runner(model), _input_shape(model.inputs[0].shape)


def _saved_model_runner(path: Path, threads: int | None) -> tuple[Runner, InputShape]:
    """TensorFlow's thread pools are process-wide; `threads` is not used."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    serve = loaded.signatures["serving_default"]
    inputs = serve.structured_input_signature[1]
    input_name = next(iter(inputs))

    def run(pixels: np.ndarray) -> np.ndarray:
        outputs = serve(**{input_name: tf.constant(pixels)})
        return np.asarray(next(iter(outputs.values())).numpy())

    # Keep the loaded object alive: the signature function refers to its variables.
    run.loaded = loaded  # type: ignore[attr-defined]
    return run, _input_shape(inputs[input_name].shape.as_list())


def onnx_runner(path: Path, threads: int | None) -> tuple[Runner, InputShape]:
    """An ONNX Runtime session on the CPU (`threads` intra-op threads; None: its default)
    as a runner of its first input, and that input's declared shape."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    model_input = session.get_inputs()[0]
    return (
        lambda pixels: session.run(None, {model_input.name: pixels})[0],
        _input_shape(model_input.shape),
    )


def _tflite_interpreter_class() -> type:
    try:  # LiteRT, TFLite's successor, when installed
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter  # noqa: N806
    interpreter_class: type = Interpreter
    return interpreter_class


def _tflite_runner(path: Path, threads: int | None) -> tuple[Runner, InputShape]:
    with warnings.catch_warnings():
        # TensorFlow's interpreter announces its move to LiteRT on every load; it still works.
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        interpreter = _tflite_interpreter_class()(model_path=str(path), num_threads=threads)
    input_details = interpreter.get_input_details()[0]
    input_index = input_details["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    allocated_shape: tuple[int, ...] | None = None

    def run(pixels: np.ndarray) -> np.ndarray:
        nonlocal allocated_shape
        # The interpreter's tensors have a fixed batch size; resize only when it changes.
        if pixels.shape != allocated_shape:
            interpreter.resize_tensor_input(input_index, pixels.shape)
            interpreter.allocate_tensors()
            allocated_shape = pixels.shape
        interpreter.set_tensor(input_index, np.ascontiguousarray(pixels))
        interpreter.invoke()
        return np.array(interpreter.get_tensor(output_index))

    return run, _input_shape(input_details["shape_signature"])
