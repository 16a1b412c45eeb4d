"""`python -m benchmarks.ranks KIND SPEC OUT`: run one kind of measurement;
rank 0 writes its result (JSON) to OUT."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

from .master import master
from .steps import steps
from .train import train
from .transport import transport
from .world import load

KINDS: dict[str, Callable[[dict[str, Any]], dict[str, Any] | None]] = {
    "train": train,
    "transport": transport,
    "master": master,
    "steps": steps,
}


def main(argv: list[str]) -> int:
    kind, spec_path, out_path = argv
    spec = json.loads(Path(spec_path).read_text())
    result = KINDS[kind](spec)
    if result is not None:
        result["load_end"] = load()
        Path(out_path).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
