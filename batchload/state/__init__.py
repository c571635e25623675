"""State: the manifest, the run's ledger of every file, its file_id, hash and outcome.

A store behind one interface (:mod:`~batchload.state.ledger`): a SQLite file on one
machine, or PostgreSQL shared by many; several processes share a run by claiming its
files. It is what makes a run resumable. File ids (from a template over the file's
name or content) are decided here too.
"""
