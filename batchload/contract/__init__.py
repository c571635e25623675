"""Contracts: a dataset's locked schema written down (YAML in ``schemas/``), loaded and inferred.

First stage of a run and the one every later stage reads: column names, types (polars
and the Arrow type each is sent as), checks, keys. Reads no data files.
"""
