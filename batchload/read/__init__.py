"""Reading: which files a run takes (discovery) and what each one says, as a typed frame.

CSV, parquet and Excel are read the way the service parses them, typed by the
contract; byte sources and fingerprints (size, mtime, sha256) are taken here too.
"""
