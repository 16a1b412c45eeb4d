"""Command line: mpilearn train | make-data | demo | models."""
