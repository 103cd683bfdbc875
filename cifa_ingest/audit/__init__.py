"""Auditing what is held: the fixity audit, where a damaged master is damaged, and whether each
source is still online.
"""
