"""Checking: each file validated against its contract (pandera) before a byte is sent.

Small files are validated in groups, large CSVs block by block; keys are checked
across files; a file too large for one request has its parts cut while it is checked.
"""
