"""Training algorithms: update rules (clients.py, centers.py, rules.py) and
the registry (registry.py) that says which rules and flags each one has."""

from __future__ import annotations

from .centers import CenterRule
from .clients import ClientRule
from .registry import AlgorithmSpec, Scaled, spec_of

__all__ = ["AlgorithmSpec", "CenterRule", "ClientRule", "Scaled", "spec_of"]
