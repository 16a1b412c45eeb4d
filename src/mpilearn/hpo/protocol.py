"""Messages of a search: small pickled objects on the control communicator
(coordinator <-> block leaders) and on a block's communicator (fold leaders
<-> block leader). None of them is on a training's hot path.

    coordinator --Assignment/Stop (ASSIGN)--> block leader --bcast--> block
    block leader --Progress (REPORT)--> coordinator --bool prune or Interrupt (DECISION)--> block leader
    block leader --Outcome (REPORT)--> coordinator
    fold leader --FoldEpoch/FoldResult (FOLD_REPORT)--> block leader --FoldStop/FoldAck (FOLD_DECISION)--> fold leader
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from ..config import RunConfig
from ..errors import MpilearnError


class HpoTag(enum.IntEnum):
    # On private communicators (a split of the world, a block), so they meet no training tag.
    ASSIGN = 101
    REPORT = 102
    DECISION = 103
    FOLD_REPORT = 104
    FOLD_DECISION = 105


@dataclass(frozen=True)
class Assignment:
    """A trial for a block: one RunConfig per fold (one in all without --n-fold)."""

    number: int
    settings: dict[str, Any]
    configs: tuple[RunConfig, ...]


@dataclass(frozen=True)
class Stop:
    """No more trials. With an error, every rank of the job raises it (exit status of the error);
    with a signal number, the search was interrupted (exit status 128 + it)."""

    error: MpilearnError | None = None
    interrupted: int = 0


@dataclass(frozen=True)
class Interrupt:
    """Coordinator -> block leader, instead of a prune decision: the search is stopping (SIGTERM/SIGINT)."""

    signum: int


@dataclass(frozen=True)
class Progress:
    """The objective after one epoch (mean over folds), for pruning."""

    number: int
    epoch: int
    value: float


@dataclass(frozen=True)
class Outcome:
    """How a trial ended, sent by the block leader once every fold has ended."""

    number: int
    state: str  # "complete" | "pruned" | "fail" | "interrupted" (does not count; runs again on resume)
    value: float | None = None
    fold_values: tuple[float | None, ...] = ()
    error: str = ""
    # True when the search itself is wrong (e.g. --metric names no result): stop the search.
    fatal: bool = False
    epochs: int = 0
    seconds: float = 0.0
    signum: int = 0  # "interrupted": the signal


@dataclass(frozen=True)
class FoldEpoch:
    """A fold leader's result after one epoch (it trains on without waiting)."""

    fold: int
    epoch: int
    value: float | None
    problem: str = ""
    fatal: bool = False


@dataclass(frozen=True)
class FoldResult:
    """A fold's end: its final objective value, or why it has none."""

    fold: int
    value: float | None = None
    problem: str = ""
    fatal: bool = False
    epochs: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    interrupted: int = 0  # the fold's training stopped for this signal


@dataclass(frozen=True)
class FoldStop:
    """Block leader -> fold leader: stop training this trial (pruned or failing)."""

    number: int


@dataclass(frozen=True)
class FoldAck:
    """Block leader -> fold leader: your FoldResult arrived; nothing more comes for this trial."""

    number: int
