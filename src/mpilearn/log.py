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
