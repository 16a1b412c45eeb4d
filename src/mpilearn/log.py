"""Logging with every line prefixed by rank and role, as HPC logs need."""

from __future__ import annotations

import logging
import sys

LOGGER_NAME = "mpilearn"


def setup_logging(rank: int, role: str, level: str = "info") -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(f"[rank {rank} {role}] %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    return logger


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def result(message: str, *args: object) -> None:
    """A line printed whatever the level: the final line of a run, shown
    even with --quiet (which keeps only errors otherwise)."""
    logger = get_logger()
    logger.log(max(logging.INFO, logger.getEffectiveLevel()), message, *args)
