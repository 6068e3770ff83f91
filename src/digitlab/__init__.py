"""digitlab: handwritten-digit classification with Keras, from raw data to a served model.

The public API is re-exported here. Names are imported on first use, so that
`import digitlab` and the CLI's `--help` stay fast (TensorFlow takes seconds to import).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # errors
    "DigitlabError": "digitlab.errors",
    "DataError": "digitlab.errors",
    "ChecksumError": "digitlab.errors",
    "SourceUnavailableError": "digitlab.errors",
    "ImageError": "digitlab.errors",
    "NoDigitFoundError": "digitlab.errors",
    "ModelError": "digitlab.errors",
    "ConfigError": "digitlab.errors",
    "ExportError": "digitlab.errors",
    "NotAnImageError": "digitlab.errors",
    "CorruptImageError": "digitlab.errors",
    "ImageTooLargeError": "digitlab.errors",
    "load_keras_model": "digitlab.modelfile",
    # data
    "load_mnist": "digitlab.data.sources",
    "load_dataset": "digitlab.data.sources",
    "Dataset": "digitlab.data.sources",
    "fetch_mnist": "digitlab.data.sources",
    "load_idx_dataset": "digitlab.data.idx",
    "read_idx": "digitlab.data.idx",
    "write_idx": "digitlab.data.idx",
    "load_image_folder": "digitlab.data.folders",
    "export_image_folder": "digitlab.data.folders",
    "scan_image_folder": "digitlab.data.folders",
    "split_image_folder": "digitlab.data.folders",
    # exploration
    "explore": "digitlab.exploration",
    "ExploreReport": "digitlab.exploration",
    "feature_views": "digitlab.features",
    # models and training
    "build_model": "digitlab.models",
    "list_models": "digitlab.models",
    "MODELS": "digitlab.models",
    "TrainConfig": "digitlab.config",
    "make_config": "digitlab.config",
    "PRESETS": "digitlab.presets",
    "train": "digitlab.training",
    "RunResult": "digitlab.training",
    "configure_threads": "digitlab.devices",
    "training_strategy": "digitlab.devices",
    "split_cpu": "digitlab.devices",
    "DigitAugmentation": "digitlab.augment",
    "pretrained_model_path": "digitlab.pretrained",
    "build_ensemble": "digitlab.ensemble",
    "ensemble_runs": "digitlab.ensemble",
    "EnsembleResult": "digitlab.ensemble",
    # evaluation
    "evaluate": "digitlab.evaluation",
    "evaluate_model_file": "digitlab.evaluation",
    "write_evaluation": "digitlab.evaluation",
    "EvaluationResult": "digitlab.evaluation",
    "compare": "digitlab.comparison",
    "ComparisonRow": "digitlab.comparison",
    # serving
    "create_app": "digitlab.serve.app",
    # prediction and export
    "to_mnist": "digitlab.images",
    "Predictor": "digitlab.predict",
    "Predictions": "digitlab.predict",
    "FilePrediction": "digitlab.predict",
    "FileFailure": "digitlab.predict",
    "export_model": "digitlab.export",
    "ExportReport": "digitlab.export",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'digitlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
