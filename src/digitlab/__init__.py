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
    "TrainingDivergedError": "digitlab.errors",
    "load_keras_model": "digitlab.inference.modelfile",
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
    "split_image_folder": "digitlab.data.split",
    # exploration
    "explore": "digitlab.exploration.explorer",
    "ExploreReport": "digitlab.exploration.explorer",
    "feature_views": "digitlab.exploration.features",
    # models and training
    "build_model": "digitlab.models",
    "list_models": "digitlab.models",
    "MODELS": "digitlab.models",
    "TrainConfig": "digitlab.training.config",
    "make_config": "digitlab.training.config",
    "PRESETS": "digitlab.training.presets",
    "train": "digitlab.training.loop",
    "RunResult": "digitlab.training.loop",
    "configure_threads": "digitlab.training.devices",
    "training_strategy": "digitlab.training.devices",
    "split_cpu": "digitlab.training.devices",
    "DigitAugmentation": "digitlab.training.augment",
    "finetune": "digitlab.training.finetune",
    "FinetuneResult": "digitlab.training.finetune",
    "FinetuneScores": "digitlab.training.finetune",
    "FinetuneProgress": "digitlab.training.finetune",
    "pretrained_model_path": "digitlab.inference.pretrained",
    "build_ensemble": "digitlab.inference.ensemble",
    "ensemble_runs": "digitlab.inference.ensemble",
    "EnsembleResult": "digitlab.inference.ensemble",
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
    "Predictor": "digitlab.inference.predictor",
    "Predictions": "digitlab.inference.predictor",
    "FilePrediction": "digitlab.inference.predictor",
    "FileFailure": "digitlab.inference.predictor",
    "FileReading": "digitlab.inference.predictor",
    # reading whole numbers
    "read_number": "digitlab.reading",
    "NumberReading": "digitlab.reading",
    "DigitReading": "digitlab.reading",
    "export_model": "digitlab.inference.export",
    "ExportReport": "digitlab.inference.export",
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
