"""Sending: request bodies, the HTTP transport, retries and pacing, and the upload stage.

``transport`` is the only code that speaks HTTP; ``sender`` runs one call under the
retry policy; ``uploader`` turns checked files into receipts and manifest rows.
"""
