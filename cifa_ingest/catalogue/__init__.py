"""The catalogue: the register of films and of the permission to keep them, and one-off jobs named
by plain values.
"""
