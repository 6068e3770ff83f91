"""Knowing when an image is not a digit: non-digit images, the scores that tell them apart,
and the head a model carries to say so (issue 18)."""
