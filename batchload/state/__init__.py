"""State: the manifest, the run's ledger of every file, its file_id, hash and outcome.

A SQLite file written by one writer task; it is what makes a run resumable. File ids
(from a template over the file's name or content) are decided here too.
"""
