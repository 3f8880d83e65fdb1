"""Logs: ingest, query, search, live streams and retention (10-core §11, §12)."""
