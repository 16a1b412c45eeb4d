"""Rank 0 decides, every rank learns the verdict: the same result or the same error."""
from __future__ import annotations

import traceback
from typing import Any, Callable

from ..errors import MpilearnError
from .transport import Communicator


def decide_on_root(comm: Communicator, work: Callable[[], Any]) -> Any:
    """Run `work` on rank 0 and give every rank its result, or raise its error
    on every rank (marked `collective`, so that only rank 0 reports it). A
    bad input file then ends all ranks together instead of leaving the
    others waiting for a rank that gave up."""
    outcome: Any = None
    if comm.rank == 0:
        try:
            outcome = ("ok", work())
        except MpilearnError as exc:
            outcome = ("error", exc)
        except Exception as exc:  # unexpected: still end every rank, with the cause
            traceback.print_exc()
            outcome = ("error", MpilearnError(f"{type(exc).__name__}: {exc}"))
    outcome = comm.bcast_object(outcome)
    if outcome[0] == "error":
        error = outcome[1]
        error.collective = True
        raise error
    return outcome[1]
