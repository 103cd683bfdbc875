"""The archive on disk: where bags are placed, the ledger of what it holds, the hash-chained audit
log, the ledger's migrations, and the slots that bound concurrent work.
"""
