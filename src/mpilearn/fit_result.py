"""What `mpilearn.fit` returns: a Keras `History`, as `Model.fit` returns,
that also reads like the history.json dictionary (`result["epochs"]`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import keras

from .rundir import HISTORY


class History(keras.callbacks.History):
    """`history.history` maps `loss` and each `val_*` to one value per epoch,
    `history.epoch` lists the epochs (from 0), `history.model` is the trained
    model and `history.params` holds `epochs` and `steps`, as after
    `Model.fit`. `history.run_dir` is where rank 0 wrote history.json and
    model.keras; `history["..."]` and `history.record` give the whole
    history.json record (`epochs` rows, `samples_seen`, `workers`, ...)."""

    def __init__(self, record: dict[str, Any], model: Any) -> None:
        super().__init__()
        self.record = record
        self.run_dir = Path(record.get("config", {}).get("run_dir", "") or ".")
        rows = [r for r in record.get("epochs", []) if r.get("kind") != "updates" and not r.get("final")]
        self.epoch = [int(r["epoch"]) - 1 for r in rows]
        keys = ["loss"] + sorted({k for r in rows for k in r if k.startswith("val_")})
        self.history = {k: [r.get("train_loss" if k == "loss" else k) for r in rows] for k in keys}
        if not any(v is not None for v in self.history["loss"]):
            del self.history["loss"]
        self.set_model(model)
        self.set_params({"epochs": record.get("config", {}).get("epochs", len(rows)), "steps": None, "verbose": 0})

    @property
    def history_file(self) -> Path:
        return self.run_dir / HISTORY

    # The history.json record, as fit returned it before (a dict).
    def __getitem__(self, key: str) -> Any:
        return self.record[key]

    def __contains__(self, key: object) -> bool:
        return key in self.record

    def __iter__(self) -> Iterator[str]:
        return iter(self.record)

    def get(self, key: str, default: Any = None) -> Any:
        return self.record.get(key, default)

    def keys(self) -> Any:
        return self.record.keys()

    def __repr__(self) -> str:
        return f"<mpilearn History: {len(self.epoch)} epochs, {sorted(self.history)}, run_dir={str(self.run_dir)!r}>"
