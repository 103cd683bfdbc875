"""The bag: writing BagIt bags (RFC 8493), validating them with stable codes, and the fixity engine
that hashes every file once.
"""
