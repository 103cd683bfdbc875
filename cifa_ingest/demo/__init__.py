"""The built-in demo: generated films served from 127.0.0.1 by a small HTTP server that the tests
also use.
"""
