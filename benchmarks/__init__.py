"""Benchmarks: batchload side by side with the guide client, a thread pool and the ceiling."""
