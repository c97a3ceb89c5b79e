"""Versioned, append-only SQL migrations of the PostgreSQL store (``NNNN_name.sql``).

A package (not a bare folder) so ``importlib.resources`` finds the files in a wheel as well
as in a checkout. Never edit an applied file: the store records each file's checksum and
refuses to open a database whose history differs; add a new numbered file instead.
"""
