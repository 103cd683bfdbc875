"""Normalising: the FFV1/Matroska master and the access copy, the format policy that chooses the
action, the frame-by-frame proof, and the MediaConch check.
"""
