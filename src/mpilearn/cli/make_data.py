"""`mpilearn make-data`: synthetic calorimeter showers in mpi_learn's layout."""

from __future__ import annotations

import argparse
import time

from ..errors import ConfigError


def parse_shape(text: str) -> tuple[int, int, int]:
    try:
        dims = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--shape must be three integers D,H,W, got {text!r}") from None
    if len(dims) != 3:
        raise ConfigError(f"--shape must be three integers D,H,W, got {text!r}")
    return dims


def make_data(args: argparse.Namespace) -> int:
    from ..data.synthetic import ShowerSpec, write_dataset

    try:
        spec = ShowerSpec(
            files=args.files,
            val_files=args.val_files,
            events_per_file=args.events_per_file,
            shape=parse_shape(args.shape),
            num_classes=args.classes,
            seed=args.seed,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    start = time.perf_counter()
    train_list, val_list = write_dataset(args.outdir, spec)
    print(
        f"wrote {spec.files} training and {spec.val_files} validation files of {spec.events_per_file} events "
        f"({'x'.join(map(str, spec.shape))}) in {time.perf_counter() - start:.1f}s\n"
        f"  training list:   {train_list}\n  validation list: {val_list}"
    )
    return 0
