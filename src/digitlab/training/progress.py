"""Keras's progress bar, counting the steps of an epoch right when several run at a time.

With `steps_per_execution`, Keras reports each group of steps as a whole one, so an epoch of
422 steps run 32 at a time ends at "448/422" with a negative time left
(keras-team/keras#20861). This bar never counts past the epoch's steps.
"""

from __future__ import annotations

from typing import Any


def step_progress_bar() -> Any:
    """A `keras.callbacks.ProgbarLogger` that stops counting at the last step; Keras adds
    no bar of its own when the callbacks hold this one, and its verbosity is `fit`'s."""
    import keras

    class StepProgressBar(keras.callbacks.ProgbarLogger):  # type: ignore[misc]  # Keras ships no types
        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            super().on_train_batch_end(self._at_most_last(batch), logs)

        def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            super().on_test_batch_end(self._at_most_last(batch), logs)

        def _at_most_last(self, batch: int) -> int:
            return batch if self.target is None else min(batch, self.target - 1)

    return StepProgressBar()
