"""Exploring a dataset: statistics, projections and clusters, the classic feature views of
a digit, and the report that gathers them."""
