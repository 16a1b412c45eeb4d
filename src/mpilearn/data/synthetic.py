"""Synthetic 3D calorimeter showers for particle classification.

Why this exists: the high-energy-physics benchmark of the mpi_learn paper
(arXiv:1712.05878) trains a 3D CNN on calorimeter images, but the real data is
large and not always at hand.  This module produces data with the same layout
(HDF5 files holding ``features`` of shape ``(N, D, H, W, 1)`` and one-hot
``labels`` of shape ``(N, C)``, plus the plain-text file lists mpi_learn reads)
from a small, fast, *physically motivated* toy simulation, so that benchmarks
and tests exercise a task that is learnable but not trivial.

The classes (``num_classes=C`` uses the first C of :data:`CLASS_NAMES`) and
the model, in short (lengths in radiation lengths X0 along the depth axis and
in Moliere radii R_M across it):

0. electron/photon -- one electromagnetic (EM) shower following the
   Grindhammer longitudinal profile ``dE/dt ~ t^(a-1) exp(-b t)`` with
   ``t_max = ln(E/E_c) - 0.5`` and a two-component (core + tail) lateral
   profile, narrow (~1 R_M).  Photons start after a conversion length; some
   converted in front of the calorimeter and arrive as an e+e- pair spread by
   the magnetic field: two showers, which look like class 2.
1. charged pion -- a hadronic shower starting at a depth drawn from an
   exponential with a long interaction length; longer and wider than EM,
   strongly fluctuating, with an EM sub-core (pi0 -> gamma gamma) whose
   fraction ``f_em`` fluctuates and sometimes dominates (EM-like showers).  A
   minimum-ionising (MIP) track with Landau-like fluctuations precedes it.
2. neutral pion -- two photon showers whose separation ~ m/(E sqrt(z(1-z)))
   is resolved at low energy but merges into one photon-like shower at high
   energy: the classic, genuinely overlapping gamma/pi0 separation.
3. neutral hadron -- as 1 without the MIP track, so 1 and 3 differ only by a
   faint track whose length is the interaction depth.

Every event has a random energy (uniform 10-100 GeV), impact point and small
incidence angle.  Energy is deposited as discrete "spots" of fixed energy
whose number is Poisson distributed: this *is* the per-cell sampling
fluctuation (hadronic spots are larger, hence the worse hadronic resolution).
Gaussian electronic noise is added to every cell and cells below a readout
threshold are zeroed.  The detector has a fixed physical size, so coarser
grids see the same showers through bigger cells.

Everything is vectorised over spots (numpy + ``np.bincount``); there is no
per-voxel and no per-event Python loop.  Each file is generated from its own
random stream ``default_rng([seed, split, index])``, so a file's content does
not depend on how many files are written.
"""

from __future__ import annotations

import math
import os
import pathlib
import secrets
from dataclasses import dataclass
from typing import Any, Final, TypeGuard

import h5py
import numpy as np

__all__ = [
    "CLASS_NAMES",
    "ShowerSpec",
    "simulate_showers",
    "write_dataset",
]

GENERATOR_NAME: Final = "mpilearn.data.synthetic"
GENERATOR_VERSION: Final = 1

#: Particle types, in label order.  ``num_classes=C`` uses the first C.
CLASS_NAMES: Final[tuple[str, ...]] = (
    "electron/photon",  # 0: EM shower, early and compact
    "charged pion",  # 1: hadronic shower + MIP track before it
    "neutral pion",  # 2: two nearby EM showers (pi0 -> gamma gamma)
    "neutral hadron",  # 3: hadronic shower, no track
)
MAX_CLASSES: Final = len(CLASS_NAMES)

# ---------------------------------------------------------------------------
# Detector and physics constants.  The detector has a fixed physical size, so
# a coarser grid shows the same showers with fewer, bigger cells.
# ---------------------------------------------------------------------------
DEPTH_X0: Final = 25.0  # total depth in radiation lengths
LATERAL_SPAN_RM: Final = 12.0  # width of the shorter lateral side, in R_M
ENERGY_RANGE_GEV: Final = (10.0, 100.0)  # incident energy, uniform
# Features are deposits in units of ENERGY_UNIT_GEV: the noise floor is then
# ~0.05, most shower cells 0.1-2 and the hottest cell of a shower 2-15.  Inputs
# of that size let a small CNN trained with Adam (lr 1e-3) leave chance within
# an epoch or two; with 1 GeV units the first epochs crawl.
ENERGY_UNIT_GEV: Final = 0.25
CRITICAL_ENERGY_GEV: Final = 0.0074  # E_c of a tungsten/lead absorber

# EM showers.
EM_SPOT_GEV: Final = 0.05  # 20 spots/GeV -> ~22%/sqrt(E) stochastic term
EM_B: Final = 0.5  # Grindhammer b
EM_TMAX_SPREAD: Final = 0.10  # relative event-to-event spread of t_max
PHOTON_CONVERSION_X0: Final = 9.0 / 7.0  # mean free path before pair creation
ELECTRON_FRACTION: Final = 0.4  # class 0 = electrons + photons
UPSTREAM_CONVERSION_PROB: Final = 0.2  # photons converted before the calorimeter
CONVERSION_SEPARATION_RM_GEV: Final = 10.0  # pair spread: K/E * (1/z + 1/(1-z))
EM_CORE_RM: Final = (0.12, 0.10)  # core radius = c0 + c1 * t/t_max
EM_TAIL_RM: Final = (0.55, 0.35)  # tail radius = c0 + c1 * t/t_max
EM_CORE_FRACTION: Final = (0.85, 0.15)  # p_core = c0 - c1 * t/t_max, clipped

# Hadronic showers (toy "effective" numbers, chosen so most showers start
# inside the detector and are visibly longer/wider than EM ones).
INTERACTION_LENGTH_X0: Final = 12.0  # mean depth of the first interaction
MAX_START_FRACTION: Final = 0.7  # only showers starting in the front 70% kept
HAD_SPOT_GEV: Final = 0.5  # bigger spots -> clumpier, ~70%/sqrt(E)
HAD_E_OVER_H: Final = 1.6  # non-EM energy is seen at 1/1.6 of its value
HAD_A: Final = 1.8  # gamma shape of the hadronic longitudinal profile
HAD_SCALE_X0: Final = 4.5  # gamma scale (median; fluctuates per event)
HAD_WIDTH_RM: Final = 1.3  # lateral width scale (median; fluctuates)
HAD_WIDTH_GROWTH: Final = 0.06  # relative widening per X0 after the start
HAD_SPREAD: Final = 0.35  # log-normal sigma of per-event scale/width
HAD_FEM_BETA: Final = (2.0, 3.5)  # f_em ~ Beta(...) for typical showers
HAD_EMLIKE_PROB: Final = 0.12  # probability of an EM-dominated shower
HAD_EMLIKE_FEM: Final = (0.7, 0.95)  # f_em ~ U(...) for those
HAD_SUBCORE_OFFSET_RM: Final = 0.4  # spread of the EM sub-core position

# Charged-particle MIP track.
MIP_GEV_PER_X0: Final = 0.02  # EM-scale equivalent deposit of a MIP
MIP_STEP_X0: Final = 0.25  # step of the track sampling
MIP_LANDAU_WIDTH: Final = 0.15  # scale of the Moyal (Landau-like) tail

# Neutral pion: opening distance d = K / (E sqrt(z(1-z))) at the calorimeter.
# A CLIC-like ECAL at 1.5 m gives K ~ 22; 40 (a more distant or finer
# calorimeter) resolves more pairs, which sets the gamma/pi0 confusion so that
# a small CNN lands at ~75-85% on 3 classes (tuned empirically).
PI0_SEPARATION_RM_GEV: Final = 40.0

# Readout.
NOISE_GEV: Final = 0.006  # Gaussian electronic noise per cell
THRESHOLD_SIGMA: Final = 2.0  # zero suppression at this many sigma

# Event geometry.
IMPACT_SPREAD_RM: Final = 0.8  # impact point uniform in +-this
SLOPE_SIGMA_RM_PER_X0: Final = 0.02  # incidence angle (per lateral axis)

_EVENTS_PER_BLOCK: Final = 1024  # bounds memory of write_dataset


# ---------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------
def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_int(name: str, value: object, minimum: int, maximum: int | None = None) -> None:
    allowed = f"an integer >= {minimum}" if maximum is None else (f"an integer between {minimum} and {maximum}")
    if not _is_int(value) or value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"ShowerSpec.{name}: got {value!r}, expected {allowed}")


def _check_shape(name: str, value: object) -> tuple[int, int, int]:
    """Normalise a (D, H, W) shape; lists are accepted (they come from CLIs/JSON)."""
    allowed = "a sequence of 3 integers (D, H, W), each >= 2"
    try:
        items: tuple[Any, ...] = tuple(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{name}: got {value!r}, expected {allowed}") from None
    if len(items) != 3 or not all(_is_int(v) and v >= 2 for v in items):
        raise ValueError(f"{name}: got {value!r}, expected {allowed}")
    return (int(items[0]), int(items[1]), int(items[2]))


@dataclass(frozen=True)
class ShowerSpec:
    """What :func:`write_dataset` generates; validated eagerly so a bad option
    fails with a clear message before any file is touched."""

    files: int = 4
    val_files: int = 1
    events_per_file: int = 500
    shape: tuple[int, int, int] = (25, 25, 25)  # D (depth), H, W
    num_classes: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        _check_int("files", self.files, 1)
        _check_int("val_files", self.val_files, 0)
        _check_int("events_per_file", self.events_per_file, 1)
        object.__setattr__(self, "shape", _check_shape("ShowerSpec.shape", self.shape))
        _check_int("num_classes", self.num_classes, 2, MAX_CLASSES)
        _check_int("seed", self.seed, 0)
        for name in ("files", "val_files", "events_per_file", "num_classes", "seed"):
            object.__setattr__(self, name, int(getattr(self, name)))

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASS_NAMES[: self.num_classes]


# ---------------------------------------------------------------------------
# Simulation
# ---------------------------------------------------------------------------
@dataclass
class _Spots:
    """Energy deposits of many events, one entry per spot (flat arrays)."""

    event: np.ndarray  # int64 event index
    t: np.ndarray  # depth in X0
    x: np.ndarray  # lateral offset from the particle axis, R_M
    y: np.ndarray
    e: np.ndarray  # energy in GeV (EM scale)


def _concat(parts: list[_Spots]) -> _Spots:
    if not parts:
        empty = np.zeros(0)
        return _Spots(np.zeros(0, dtype=np.int64), empty, empty, empty, empty)
    return _Spots(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("event", "t", "x", "y", "e")))


def _radial(rng: np.random.Generator, radius: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample (x, y) from the profile 2 r R^2 / (r^2 + R^2)^2 (Grindhammer's
    lateral form, CDF r^2/(r^2+R^2)): a core with power-law tails, like real
    showers.  The tail is cut at ~30 R so no spot lands absurdly far."""
    u = rng.uniform(0.0, 0.999, size=radius.shape)
    r = radius * np.sqrt(u / (1.0 - u))
    phi = rng.uniform(0.0, 2.0 * math.pi, size=radius.shape)
    return r * np.cos(phi), r * np.sin(phi)


def _em_showers(
    rng: np.random.Generator,
    event: np.ndarray,
    energy: np.ndarray,
    t_start: np.ndarray,
    x0: np.ndarray,
    y0: np.ndarray,
) -> _Spots:
    """EM showers (one per entry of ``event``) with Grindhammer-like profiles."""
    n_spots = rng.poisson(energy / EM_SPOT_GEV)
    t_max = np.log(np.maximum(energy, 10 * CRITICAL_ENERGY_GEV) / CRITICAL_ENERGY_GEV) - 0.5
    t_max = t_max * rng.lognormal(0.0, EM_TMAX_SPREAD, size=energy.shape)
    a = EM_B * t_max + 1.0
    rep = np.repeat(np.arange(event.size), n_spots)
    depth = rng.gamma(a[rep], 1.0 / EM_B)
    tau = depth / t_max[rep]
    core = EM_CORE_RM[0] + EM_CORE_RM[1] * tau
    tail = EM_TAIL_RM[0] + EM_TAIL_RM[1] * tau
    p_core = np.clip(EM_CORE_FRACTION[0] - EM_CORE_FRACTION[1] * tau, 0.3, 0.95)
    radius = np.where(rng.uniform(size=rep.shape) < p_core, core, tail)
    x, y = _radial(rng, radius)
    return _Spots(
        event=event[rep],
        t=t_start[rep] + depth,
        x=x0[rep] + x,
        y=y0[rep] + y,
        e=np.full(rep.shape, EM_SPOT_GEV),
    )


def _photon_start(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.exponential(PHOTON_CONVERSION_X0, size=n)


def _em_pair(
    rng: np.random.Generator,
    event: np.ndarray,
    energy: np.ndarray,
    z: np.ndarray,
    sep: np.ndarray,
    phi: np.ndarray,
    start: tuple[np.ndarray, np.ndarray],
) -> _Spots:
    """Two EM showers with energies (z E, (1-z) E), ``sep`` apart along
    direction ``phi``, placed so their energy-weighted centroid is on the axis."""
    ux, uy = np.cos(phi), np.sin(phi)
    first = _em_showers(rng, event, z * energy, start[0], (1.0 - z) * sep * ux, (1.0 - z) * sep * uy)
    second = _em_showers(rng, event, (1.0 - z) * energy, start[1], -z * sep * ux, -z * sep * uy)
    return _concat([first, second])


def _electron_photon(rng: np.random.Generator, event: np.ndarray, energy: np.ndarray) -> _Spots:
    """Class 0: electrons (shower from the front face) and photons (shower
    after a conversion length).  Photons that converted in the tracker in
    front arrive as an e+e- pair split by the magnetic field along W: two
    showers, like a neutral pion -- a genuine, physical overlap with class 2."""
    n = event.size
    kind = rng.uniform(size=n)
    electron = kind < ELECTRON_FRACTION
    converted = kind >= 1.0 - (1.0 - ELECTRON_FRACTION) * UPSTREAM_CONVERSION_PROB
    single = ~converted
    start = np.where(electron, 0.0, _photon_start(rng, n))
    zero = np.zeros(n)
    parts = [_em_showers(rng, event[single], energy[single], start[single], zero[single], zero[single])]
    if converted.any():
        m = int(converted.sum())
        z = rng.uniform(0.05, 0.95, size=m)
        e_conv = energy[converted]
        sep = CONVERSION_SEPARATION_RM_GEV / e_conv * (1.0 / z + 1.0 / (1.0 - z))
        phi = np.where(rng.uniform(size=m) < 0.5, 0.0, math.pi)  # bending plane
        parts.append(_em_pair(rng, event[converted], e_conv, z, sep, phi, (np.zeros(m), np.zeros(m))))
    return _concat(parts)


def _neutral_pion(rng: np.random.Generator, event: np.ndarray, energy: np.ndarray) -> _Spots:
    """Class 2: two photons sharing the energy (z flat), separated by the
    opening angle ~ m / (E sqrt(z(1-z))): resolved at low energy, merged
    into one photon-like shower at high energy."""
    n = event.size
    z = rng.uniform(0.05, 0.95, size=n)
    sep = PI0_SEPARATION_RM_GEV / (energy * np.sqrt(z * (1.0 - z)))
    phi = rng.uniform(0.0, 2.0 * math.pi, size=n)
    return _em_pair(rng, event, energy, z, sep, phi, (_photon_start(rng, n), _photon_start(rng, n)))


def _hadrons(rng: np.random.Generator, event: np.ndarray, energy: np.ndarray, charged: bool) -> _Spots:
    """Classes 1 and 3: hadronic showers; charged ones add a MIP track."""
    n = event.size
    # First interaction: exponential, truncated to the front of the detector
    # (an event selection: particles that do not shower are not kept).
    t_cut = MAX_START_FRACTION * DEPTH_X0
    u = rng.uniform(size=n)
    t0 = -INTERACTION_LENGTH_X0 * np.log1p(-u * (1.0 - math.exp(-t_cut / INTERACTION_LENGTH_X0)))

    # EM fraction from pi0 production; sometimes (charge exchange-like) the
    # shower is EM dominated and resembles class 0.
    f_em = np.where(
        rng.uniform(size=n) < HAD_EMLIKE_PROB,
        rng.uniform(*HAD_EMLIKE_FEM, size=n),
        rng.beta(*HAD_FEM_BETA, size=n),
    )
    sub_x = rng.normal(0.0, HAD_SUBCORE_OFFSET_RM, size=n)
    sub_y = rng.normal(0.0, HAD_SUBCORE_OFFSET_RM, size=n)
    sub_start = t0 + rng.exponential(1.0, size=n)
    parts = [_em_showers(rng, event, f_em * energy, sub_start, sub_x, sub_y)]

    # Purely hadronic part: seen at a reduced scale (e/h > 1), big spots,
    # long and wide profile whose size fluctuates event by event.
    e_had = (1.0 - f_em) * energy / HAD_E_OVER_H
    n_spots = rng.poisson(e_had / HAD_SPOT_GEV)
    scale = HAD_SCALE_X0 * rng.lognormal(0.0, HAD_SPREAD, size=n)
    width = HAD_WIDTH_RM * rng.lognormal(0.0, HAD_SPREAD, size=n)
    rep = np.repeat(np.arange(n), n_spots)
    depth = rng.gamma(HAD_A, scale[rep])
    x, y = _radial(rng, width[rep] * (1.0 + HAD_WIDTH_GROWTH * depth))
    parts.append(_Spots(event[rep], t0[rep] + depth, x, y, np.full(rep.shape, HAD_SPOT_GEV)))

    if charged:
        # MIP track from the front face to the interaction point, Landau-like
        # (Moyal) fluctuations per step, exactly on the particle axis.
        steps = np.ceil(t0 / MIP_STEP_X0).astype(np.int64)
        rep = np.repeat(np.arange(n), steps)
        first = np.cumsum(steps) - steps
        k = np.arange(rep.size) - first[rep]
        t = (k + 0.5) * MIP_STEP_X0
        keep = t < t0[rep]
        moyal = -np.log(np.maximum(rng.standard_normal(rep.size) ** 2, 1e-12))
        e = MIP_GEV_PER_X0 * MIP_STEP_X0 * np.maximum(1.0 + MIP_LANDAU_WIDTH * (moyal - 1.27), 0.2)
        zero = np.zeros(int(keep.sum()))
        parts.append(_Spots(event[rep][keep], t[keep], zero, zero, e[keep]))
    return _concat(parts)


def _charged_pion(rng: np.random.Generator, event: np.ndarray, energy: np.ndarray) -> _Spots:
    return _hadrons(rng, event, energy, charged=True)


def _neutral_hadron(rng: np.random.Generator, event: np.ndarray, energy: np.ndarray) -> _Spots:
    return _hadrons(rng, event, energy, charged=False)


_SIMULATORS = (_electron_photon, _charged_pion, _neutral_pion, _neutral_hadron)
assert len(_SIMULATORS) == MAX_CLASSES


def simulate_showers(
    n_events: int,
    shape: tuple[int, int, int],
    num_classes: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate ``n_events`` showers on a ``(D, H, W)`` grid.

    Returns ``(features, labels)``: features ``(n, D, H, W, 1)`` float32 in
    units of ``ENERGY_UNIT_GEV`` (zero-suppressed: about 5% of the cells of a
    25^3 grid are non-zero, 0.05-2 typically, up to ~15 in a shower core),
    labels ``(n, num_classes)`` one-hot float32.  Classes are
    drawn uniformly at random per event, so they are balanced only on average.
    The result depends only on the arguments and the state of ``rng``.
    """
    if not _is_int(n_events) or n_events < 0:
        raise ValueError(f"n_events: got {n_events!r}, expected an integer >= 0")
    depth, height, width = _check_shape("shape", shape)
    if not _is_int(num_classes) or not 2 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"num_classes: got {num_classes!r}, expected an integer between 2 and {MAX_CLASSES}")
    n = int(n_events)
    label = rng.integers(0, num_classes, size=n)
    energy = rng.uniform(*ENERGY_RANGE_GEV, size=n)
    impact_x = rng.uniform(-IMPACT_SPREAD_RM, IMPACT_SPREAD_RM, size=n)
    impact_y = rng.uniform(-IMPACT_SPREAD_RM, IMPACT_SPREAD_RM, size=n)
    slope_x = rng.normal(0.0, SLOPE_SIGMA_RM_PER_X0, size=n)
    slope_y = rng.normal(0.0, SLOPE_SIGMA_RM_PER_X0, size=n)

    parts = []
    for cls in range(num_classes):
        event = np.flatnonzero(label == cls)
        if event.size:
            parts.append(_SIMULATORS[cls](rng, event, energy[event]))
    spots = _concat(parts)

    # Place spots along each particle's (slightly tilted) trajectory and bin.
    cell_t = DEPTH_X0 / depth
    cell_xy = LATERAL_SPAN_RM / min(height, width)
    ev = spots.event
    x = spots.x + impact_x[ev] + slope_x[ev] * spots.t
    y = spots.y + impact_y[ev] + slope_y[ev] * spots.t
    it = np.floor(spots.t / cell_t).astype(np.int64)
    iy = np.floor(y / cell_xy + height / 2.0).astype(np.int64)
    ix = np.floor(x / cell_xy + width / 2.0).astype(np.int64)
    inside = (it >= 0) & (it < depth) & (iy >= 0) & (iy < height) & (ix >= 0) & (ix < width)
    flat = ((ev * depth + it) * height + iy) * width + ix
    voxels = depth * height * width
    # Electronic noise on every cell (float32, in place: this array is the
    # bulk of the memory and time), then zero suppression as in a real readout.
    cells = rng.standard_normal(size=n * voxels, dtype=np.float32)
    cells *= np.float32(NOISE_GEV)
    cells += np.bincount(flat[inside], weights=spots.e[inside], minlength=n * voxels)
    cells[cells < np.float32(THRESHOLD_SIGMA * NOISE_GEV)] = 0.0
    cells *= np.float32(1.0 / ENERGY_UNIT_GEV)
    features = cells.reshape(n, depth, height, width, 1)
    labels = np.zeros((n, num_classes), dtype=np.float32)
    labels[np.arange(n), label] = 1.0
    return features, labels


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------
def _file_rng(seed: int, split: int, index: int) -> np.random.Generator:
    """An independent stream per file, so a file's content depends only on
    (seed, split, index) -- not on how many files are generated."""
    return np.random.default_rng([seed, split, index])


def _atomic_target(path: pathlib.Path) -> pathlib.Path:
    """A fresh hidden name next to ``path`` (same filesystem, so os.replace is
    atomic).  Not tempfile.mkstemp: its 0600 mode would survive the rename and
    hide the data from other users of a shared cluster directory."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _write_h5(path: pathlib.Path, spec: ShowerSpec, split: str, split_id: int, index: int) -> None:
    rng = _file_rng(spec.seed, split_id, index)
    n = spec.events_per_file
    tmp = _atomic_target(path)
    try:
        with h5py.File(tmp, "x") as h5:
            feats = h5.create_dataset("features", shape=(n, *spec.shape, 1), dtype="float32")
            labels = h5.create_dataset("labels", shape=(n, spec.num_classes), dtype="float32")
            # Blocks bound memory for big files; the stream is consumed in the
            # same order every time, so the content stays deterministic.
            for start in range(0, n, _EVENTS_PER_BLOCK):
                stop = min(n, start + _EVENTS_PER_BLOCK)
                f, lab = simulate_showers(stop - start, spec.shape, spec.num_classes, rng)
                feats[start:stop] = f
                labels[start:stop] = lab
            h5.attrs["generator"] = GENERATOR_NAME
            h5.attrs["generator_version"] = GENERATOR_VERSION
            h5.attrs["seed"] = spec.seed
            h5.attrs["split"] = split
            h5.attrs["file_index"] = index
            h5.attrs["class_names"] = list(spec.class_names)
            h5.attrs["shape_dhw"] = list(spec.shape)
            h5.attrs["energy_unit_gev"] = ENERGY_UNIT_GEV
            h5.attrs["energy_range_gev"] = list(ENERGY_RANGE_GEV)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_list(path: pathlib.Path, files: list[pathlib.Path]) -> None:
    tmp = _atomic_target(path)
    try:
        with open(tmp, "x", encoding="utf-8") as handle:
            handle.write("".join(f"{p}\n" for p in files))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_dataset(outdir: str | os.PathLike[str], spec: ShowerSpec) -> tuple[pathlib.Path, pathlib.Path]:
    """Write ``train_NNN.h5`` / ``val_NNN.h5`` and the file lists ``train.txt`` /
    ``val.txt`` (absolute paths, one per line: the mpi_learn format) into
    ``outdir``, creating it if needed.  Returns ``(train_list, val_list)``.

    Every file is written to a temporary name and renamed into place, so a
    concurrent reader (another MPI rank) never sees a half-written file.  The
    lists are written last, so they only ever name complete files.  With
    ``val_files=0`` the validation list is empty.
    """
    if not isinstance(spec, ShowerSpec):
        raise ValueError(f"spec: got {type(spec).__name__}, expected a ShowerSpec")
    out = pathlib.Path(outdir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    lists = []
    for split, split_id, count in (("train", 0, spec.files), ("val", 1, spec.val_files)):
        paths = []
        for index in range(count):
            path = out / f"{split}_{index:03d}.h5"
            _write_h5(path, spec, split, split_id, index)
            paths.append(path)
        lists.append((out / f"{split}.txt", paths))
    for list_path, paths in lists:
        _write_list(list_path, paths)
    return lists[0][0], lists[1][0]
