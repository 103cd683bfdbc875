"""Reports for people and programs: the run summary, the ingest and audit reports, and the archive
at a glance.
"""
