"""Fixtures shared by the whole suite: the real MNIST arrays, loaded once."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from digitlab.data.sources import load_mnist  # noqa: E402

# A plugin of several test modules (`pytest_plugins`) that test_serve_api.py also imports
# from: registered here, before any of them imports it, so that pytest can rewrite it.
pytest.register_assert_rewrite("serve_fixtures")


@pytest.fixture(scope="session")
def mnist() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The real, verified MNIST arrays (fetched into the user cache on first use)."""
    return load_mnist()
