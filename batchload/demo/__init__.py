"""The demo: sample daily signal files and a whole backfill against an embedded local server.

``samples`` writes realistic files (and the usual mistakes); ``backfill`` starts
``batchload serve`` and runs ``batchload upload`` twice, as a user would.
"""
