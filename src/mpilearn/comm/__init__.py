"""Communication layer: the only package that imports mpi4py.

Capitalised mpi4py calls move raw numpy buffers; lowercase ones pickle small
control objects. Waiting never spins: requests are polled with a sleep that
backs off, so a waiting rank leaves its core to the ranks that compute.
"""

from __future__ import annotations

from .tags import Tag
from .transport import ALIVE_S, Backoff, Communicator, Request, WaitTimeout, world

__all__ = ["ALIVE_S", "Backoff", "Communicator", "Request", "Tag", "WaitTimeout", "world"]
