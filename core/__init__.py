"""Contracts the server, the training package and their users share: numpy, Pillow and the
standard library only (tests/test_layout.py checks it)."""
