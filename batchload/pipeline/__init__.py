"""The pipeline: one run wired from the stages (prepare → check → send, one manifest writer).

``prepare`` decides the work before anything is read or sent; ``run`` joins the stages
with bounded streams in one anyio task group; ``plan`` reads multi-upload TOML plans.
"""
