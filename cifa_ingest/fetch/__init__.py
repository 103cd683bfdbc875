"""Fetching: the film's bytes exactly as the source sends them, which addresses may be contacted,
and how failures are classified.
"""
