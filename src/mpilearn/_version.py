"""The version of mpilearn: the one source (pyproject.toml reads it too)."""

__version__ = "0.2.0"
