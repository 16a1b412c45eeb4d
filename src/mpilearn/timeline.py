"""A Chrome-trace (Perfetto) timeline of what every rank did and when.

Each rank records spans (compute, exchange, wait, apply, validate, ...) in
memory; at the end rank 0 gathers them and writes one JSON file that
chrome://tracing or ui.perfetto.dev loads, one row per rank.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, ContextManager

_NOTHING = contextlib.nullcontext()


class _Span:
    __slots__ = ("timeline", "name", "start")

    def __init__(self, timeline: "Timeline", name: str) -> None:
        self.timeline = timeline
        self.name = name

    def __enter__(self) -> None:
        self.start = time.time()

    def __exit__(self, *exc: object) -> None:
        self.timeline.spans.append((self.name, self.start, time.time()))


class Timeline:
    """Spans of one rank; free when disabled (a shared no-op context)."""

    def __init__(self, rank: int, role: str, enabled: bool) -> None:
        self.rank = rank
        self.role = role
        self.enabled = enabled
        self.spans: list[tuple[str, float, float]] = []
        # Spans of helper threads (background validation): (name, start, end, thread row).
        self.thread_spans: list[tuple[str, float, float, int]] = []

    def span(self, name: str) -> ContextManager[None]:
        return _Span(self, name) if self.enabled else _NOTHING

    def record(self, name: str, start: float, end: float, thread: int = 1) -> None:
        """A span timed by a helper thread; drawn on its own row (tid) of this rank."""
        if self.enabled:
            self.thread_spans.append((name, start, end, thread))

    def events(self) -> list[dict[str, Any]]:
        """Complete ('X') events in microseconds, plus the row's name."""
        events: list[dict[str, Any]] = [
            {
                "name": "process_name",
                "ph": "M",
                "pid": self.rank,
                "tid": 0,
                "args": {"name": f"rank {self.rank} {self.role}"},
            }
        ]
        for name, start, end in self.spans:
            events.append(
                {
                    "name": name,
                    "cat": self.role,
                    "ph": "X",
                    "pid": self.rank,
                    "tid": 0,
                    "ts": round(start * 1e6, 1),
                    "dur": round((end - start) * 1e6, 1),
                }
            )
        for name, start, end, thread in self.thread_spans:
            events.append(
                {
                    "name": name,
                    "cat": self.role,
                    "ph": "X",
                    "pid": self.rank,
                    "tid": thread,
                    "ts": round(start * 1e6, 1),
                    "dur": round((end - start) * 1e6, 1),
                }
            )
        return events


def trace_document(per_rank: list[list[dict[str, Any]]]) -> dict[str, Any]:
    return {"traceEvents": [event for events in per_rank for event in events], "displayTimeUnit": "ms"}
