"""Tests of the local ingestion server (``batchload serve``), against a real process."""
