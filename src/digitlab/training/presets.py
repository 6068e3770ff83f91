"""Named training presets: settings chosen by measurement for one goal each.

    fast   99% MNIST test accuracy in the least wall-clock time on a CPU
    best   the strongest single model, when there is time

A preset is a starting point: `make_config(preset="fast", overrides={"seed": 3})` applies the
preset over the defaults, then a TOML file, then flags. docs/results.md has the measurements
behind each choice.
"""

from __future__ import annotations

from typing import Any

from digitlab.errors import ConfigError

PRESETS: dict[str, dict[str, Any]] = {
    "fast": {
        # An all-strided CNN: 16-32-64-128 channels, 1.8 MFLOP per image forward (models.py).
        "model": "strided",
        # Two passes over the 54,000 training images, one warm-up quarter then cosine decay:
        # fewer steps miss 99% (1 epoch: 98.9%), more cost time without changing the outcome.
        "epochs": 2,
        "batch_size": 256,
        "lr": 0.02,
        "lr_schedule": "cosine",
        "warmup_epochs": 0.5,
        # Smoothed labels gained 0.1-0.2 points at this length (99.0 -> 99.2%).
        "label_smoothing": 0.1,
        # Augmentation only pays off over many epochs; in two it costs time and accuracy.
        "augment": False,
    },
    "best": {
        # The pre-activation residual network, with affine + elastic augmentation.
        "model": "resnet",
        "epochs": 30,
        "batch_size": 128,
        "lr": 0.003,
        "lr_schedule": "cosine",
        "warmup_epochs": 2.0,
        "label_smoothing": 0.1,
        "augment": True,
    },
}


def preset_settings(name: str) -> dict[str, Any]:
    """The settings of preset `name`. Raises `ConfigError` for an unknown name."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return {**PRESETS[name], "preset": name}
