"""Int8 quantization of an ONNX export, for CPUs with 8-bit integer instructions.

Static quantization: weights become int8 (one scale per output channel), activations uint8
with scales fixed in advance from calibration images, so ONNX Runtime runs the model's
convolutions and matrix products in 8-bit integer arithmetic (VNNI/AMX where the CPU has
them): several times faster in batches, with the same MNIST test accuracy
(docs/results.md). The export check
(`digitlab.inference.export`) then asks for top-1 agreement with Keras rather than probabilities
within 1e-4, which int8 arithmetic cannot give.

Weights use 7 of their 8 bits (`reduce_range`): on CPUs without VNNI (AVX2 only), ONNX
Runtime multiplies uint8 by int8 with an instruction that saturates pairs of products at
16 bits, and full-range weights then drift far enough to change answers (the shipped `cnn`
agreed with Keras on 994 of 1,000 test images on such a CPU; 998 with 7-bit weights).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

CALIBRATION_IMAGES = 500
"""Images whose activations set the quantization scales."""
CALIBRATION_BATCH = 50


def calibration_images(count: int = CALIBRATION_IMAGES) -> np.ndarray:
    """The first `count` MNIST training images, float32: never the test images the export
    check and evaluations use."""
    from digitlab.data.sources import load_mnist

    (x_train, _), _ = load_mnist()
    return x_train[:count].astype(np.float32)


def quantize_onnx(
    source: str | os.PathLike[str], target: str | os.PathLike[str], calibration: np.ndarray
) -> None:
    """Write an int8 version of the float ONNX model `source` to `target`.

    `calibration` holds raw-pixel images shaped like the model's input. Any failure of
    ONNX Runtime's quantizer propagates; `digitlab.inference.export` reports it.
    """
    import onnxruntime
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    input_name = (
        onnxruntime.InferenceSession(str(source), providers=["CPUExecutionProvider"])
        .get_inputs()[0]
        .name
    )

    class Batches(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime ships no types
        def __init__(self) -> None:
            self.batches = iter(
                {input_name: calibration[start : start + CALIBRATION_BATCH]}
                for start in range(0, len(calibration), CALIBRATION_BATCH)
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    with tempfile.TemporaryDirectory(dir=Path(target).parent) as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # Folds constants and fixes shapes, so more operators are quantized; the symbolic
        # shape pass needs sympy and adds nothing for these fixed-shape models.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(target),
            Batches(),
            quant_format=QuantFormat.QOperator,
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
