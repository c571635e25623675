"""The local ingestion server (``batchload serve``): the API contract, implemented for real."""
