"""Test fixtures for o1 built from public packages: a real O1-shaped checkpoint
(`python -m o1_fixtures.checkpoint`) and the transformers reference that the
golden tests compare against (`python -m o1_fixtures.golden`).

Nothing here is part of o1 itself; the scripts `make-o1-checkpoint` and
`make-golden` beside this folder set up the Python environments and call these.
"""
