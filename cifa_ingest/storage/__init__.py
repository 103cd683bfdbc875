"""Copies of the archive in further storage locations (a second disk, S3 object storage): where
they are (locations), how bytes get there and back (stores), replication, per-location audits
and repair from a copy that verifies."""
