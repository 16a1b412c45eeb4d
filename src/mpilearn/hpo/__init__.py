"""Distributed hyperparameter search (`mpilearn optimize`).

Rank 0 coordinates an Optuna study (ask/tell, the only rank that touches the
storage); the other ranks form blocks of `--block-size` ranks, and each block
runs whole distributed trainings (`training.train` on the block's
communicator), optionally split further into one sub-block per K-fold fold.

Modules: `settings` (a trial's values -> RunConfig, pure), `space` (TOML/YAML
or Python search spaces -> Optuna distributions), `layout` (which rank is in
which block and fold, pure), `folds` (K-fold splits of the file list, pure),
`protocol` (messages between coordinator and blocks), `study` (storage,
samplers, pruners, resume), `coordinator`, `block`, and `search` (the entry
run on every rank).
"""

from __future__ import annotations

from .config import SearchConfig

__all__ = ["SearchConfig"]
