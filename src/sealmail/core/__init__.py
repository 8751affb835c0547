"""Framework-free core of sealmail: OpenPGP operations and MIME.

Nothing under this package imports Django, so the core can be used and
tested on its own; ``tests/test_layout.py`` enforces that.
"""
