"""Held-out input families: the same LFPy script run with NEURON and with the surrogate, both cold.

For each input family the model never trained on, one LFPy script is run twice, once with the
NEURON cell (``l5pc(...)``) and once with ``SurrogateCell(model=..., ...)``; that line is the only
difference. Both start cold at t = 0 with the input on: the surrogate gets no history and nothing
from NEURON. By default NEURON integrates as LFPy leaves it (fixed step, NEURON's default backward
Euler) at dt = 0.025 ms, the settings of the events models' training data (``--neuron-solver
crank-nicolson``: inside :func:`surrogate_cell.cells.solver.neuron_solver`, the settings of the
``mixture`` data drive models train on); both cells are built with that ``dt``. The original families
put one excitatory ``AMPANMDA`` and one inhibitory ``GABAA`` synapse (weight 1.0) on every dendritic
segment, as the events training data does; the held-out families below build what their
description says (``LFPy.Synapse`` with its own ``syntype``, weight and time constants,
``set_spike_times``; ``LFPy.StimIntElectrode`` IClamps on the soma). Every run records the voltages,
five electrodes along the apical axis 50 um beside it and the current dipole moment (LFPy probes).
Over the time after the first ``--discard-ms`` (200 ms) it reports per family:

- somatic spikes: counts and F1 within +-3 ms (NEURON: upward crossings of -25 mV by its soma
  voltage at its own dt, 2 ms refractory; surrogate: ``cell.spike_times``);
- apical Ca-spike events: upward crossings of -20 mV by the trunk segment nearest 750 um path
  distance from the soma (20 ms refractory), counts and F1 within +-5 ms;
- the voltage RMSE of all segments on a 1 ms grid and the soma's sub-threshold RMSE (samples
  within 5 ms of a NEURON or surrogate spike left out);
- the LFP Pearson r at z = 200, 400, 600, 800, 1000 um (x = 50 um) and of the dipole's z part;
- the mean soma voltage over the last second (for the ``rest`` family: the resting voltage);
- the CPU (and wall) time of each simulator's ``simulate()``.

Families (``--families``; see :data:`FAMILIES`):

- in the training distribution of the ``mixture`` data (``surrogate_cell/data/stimulus.py``; the
  events models' published/Poisson data holds only the stationary ones): rest, poisson_published,
  poisson_weak, poisson_strong, poisson_modulated, tuft_volleys, bac, perisomatic_volleys, and the new
  current_steps (somatic IClamp steps of 0.2-1.5 nA, no synapses: the mixture's ``current`` family
  draws steps of -0.5-2 nA lasting 50-1000 ms, with no background in half of its simulations);
- held out (:data:`HELD_OUT_FAMILIES`: no training simulation holds them, since the mixture data
  draws one family per simulation, modulates with one sinusoid and adds at most 40 ExpSyn/Exp2Syn
  synapses to its AMPANMDA/GABAA ones): theta_gamma (theta-modulated Poisson with gamma nested in the
  theta peaks), volleys_on_theta_with_current (tuft and BAC volleys on a theta-modulated background
  plus a constant somatic current) and exp2syn_population (an LFPy-example population of 50-200
  Exp2Syn synapses and no other synapse).

A family whose script the model refuses (events models: IClamps, Exp2Syn at weights other than 1)
is reported as not supported by this model, with the error, and the benchmark goes on. It prints a
table and writes ``input_families.json`` and ``input_families.md`` to ``--out-dir``::

    .venv/bin/python benchmarks/input_families.py [--families bac tuft_volleys] [--seeds 0 1]
        [--duration-ms 1000] [--model l5pc-default] [--out-dir input_families_output]

With the defaults of 2026-12-03 (8 families, 2 seeds, 1 s; rest once for 2 s) it took about 9
minutes of CPU on this project's 2-core machine: NEURON 26-33 CPU s per simulated second (LFPy
with two probes at dt = 0.025 ms), the surrogate (one torch thread, ``--torch-threads``) 2-3.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import LFPy
import neuron
import numpy as np
import torch
from tqdm.auto import tqdm

from surrogate_cell.cell import SurrogateCell, SynapseMappingError, SynapseMappingWarning, UnsupportedFeatureError
from surrogate_cell.cells import l5pc, segment_path_distances
from surrogate_cell.cells.l5pc import CA_HOT_ZONE_DISTANCE_UM, ca_hot_zone_segment
from surrogate_cell.cells.solver import BACKWARD_EULER_SOLVER, DEFAULT_SOLVER, NeuronSolver
from surrogate_cell.cells.solver import neuron_solver as solver_block
from surrogate_cell.checkpoint import load_checkpoint
from surrogate_cell.pretrained import resolve_model
from surrogate_cell.spikes import REFRACTORY_MS, SPIKE_THRESHOLD_MV, spike_scores, upward_crossing_times

# ----------------------------------------------------------------------------- protocol constants

DISCARD_MS = 200
"""The first ms of every run are simulated but not compared (both simulators start cold)."""

NEURON_SPIKE_THRESHOLD_MV = SPIKE_THRESHOLD_MV
"""-25 mV: the training data's spike definition (soma peaks above -25 mV), here as an upward crossing
at NEURON's own dt; the crossing precedes the peak by a fraction of a ms."""

SPIKE_TOLERANCE_MS = 3.0
CA_THRESHOLD_MV = -20.0
CA_REFRACTORY_MS = 20.0
"""A Ca spike keeps the hot zone above -20 mV for about 20-25 ms; one event per Ca spike."""
CA_TOLERANCE_MS = 5.0
CA_TARGET_DISTANCE_UM = CA_HOT_ZONE_DISTANCE_UM
SUBTHRESHOLD_EXCLUSION_MS = 5.0
REST_WINDOW_MS = 1000

ELECTRODE_Z_UM = (200.0, 400.0, 600.0, 800.0, 1000.0)
ELECTRODE_X_UM = 50.0
SIGMA_S_PER_M = 0.3

DT_MS = 0.025
"""Both cells' ``dt``: NEURON's fixed step of the training data; the surrogate's recordings come on
the same grid."""

DEFAULT_DURATION_MS = 1000
REST_DURATION_MS = 2000
DEFAULT_SEEDS = (0, 1)
BASE_SEED = 2627
"""Input seeds: SeedSequence([BASE_SEED, crc32(family), seed]); the training data used 2026, 3031."""

# Published input statistics (../shared/reference/hay_l5pc_biophysics.md): per tree, on average 400
# excitatory and 312.5 inhibitory spikes per 100 ms, spread over the tree's segments in proportion
# to (length + 10 um). On the built-in cell that is 12.5 Hz (excitatory) and 9.7 Hz (inhibitory)
# per synapse on average.
PUBLISHED_EXC_PER_MS_PER_TREE = 4.0
PUBLISHED_INH_PER_MS_PER_TREE = 3.125
SEGMENT_LENGTH_OFFSET_UM = 10.0

TUFT_MIN_DISTANCE_UM = 700.0
PERISOMATIC_MAX_DISTANCE_UM = 150.0
VOLLEY_SPREAD_MS = 3.0
VOLLEY_FIRST_MS = DISCARD_MS + 50.0
VOLLEY_INTERVAL_MS = 150.0
VOLLEY_JITTER_MS = 20.0
BACKGROUND_SCALE = 0.25
"""Volley families ride on a stationary background at this fraction of the published rates."""


# ----------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Geometry:
    """What the input families and the metrics need to know about the cell (numpy only)."""

    section_types: np.ndarray
    path_distance_um: np.ndarray
    length_um: np.ndarray
    area_um2: np.ndarray
    input_segments: np.ndarray
    soma_segment: int
    trunk_segment: int
    trunk_segment_name: str
    trunk_euclidean_um: float

    @property
    def input_trees(self) -> np.ndarray:
        """Tree (basal or apical) of every input segment; obliques belong to the apical tree."""
        types = self.section_types[self.input_segments]
        return np.where(types == "basal", "basal", "apical")

    def published_rates_hz(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean excitatory and inhibitory rate (Hz) of every input segment's synapse in the published regime."""
        trees = self.input_trees
        weight = self.length_um[self.input_segments] + SEGMENT_LENGTH_OFFSET_UM
        share = np.empty_like(weight)
        for tree in ("basal", "apical"):
            share[trees == tree] = weight[trees == tree] / weight[trees == tree].sum()
        return 1000.0 * PUBLISHED_EXC_PER_MS_PER_TREE * share, 1000.0 * PUBLISHED_INH_PER_MS_PER_TREE * share

    def region(self, name: str) -> np.ndarray:
        """Rows (into ``input_segments``) of the tuft (apical, >= 700 um) or the perisomatic/basal region."""
        types = self.section_types[self.input_segments]
        distance = self.path_distance_um[self.input_segments]
        if name == "tuft":
            return np.flatnonzero((types == "apical") & (distance >= TUFT_MIN_DISTANCE_UM))
        if name == "perisomatic":
            return np.flatnonzero((types == "basal") | (distance <= PERISOMATIC_MAX_DISTANCE_UM))
        raise ValueError(f"unknown region {name!r}")

    def random_input_segments(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` dendritic segments drawn with replacement in proportion to their membrane area, as
        ``cell.get_rand_idx_area_norm(section=["dend", "apic"], nidx=n)`` does (with ``rng``)."""
        area = self.area_um2[self.input_segments]
        return rng.choice(self.input_segments, size=n, p=area / area.sum())


def cell_geometry(cell) -> Geometry:
    """:class:`Geometry` of an ``l5pc`` cell; the trunk segment is the main-trunk segment nearest
    :data:`CA_TARGET_DISTANCE_UM` path distance from the soma."""
    distance = segment_path_distances(cell)
    names = [f"{sec.name()}({seg.x:.4g})" for sec in cell.allseclist for seg in sec]
    trunk = ca_hot_zone_segment(cell)
    types = np.asarray(cell.section_types).astype(str)
    soma = int(np.flatnonzero(types == "soma")[0])
    mid = np.column_stack([cell.x.mean(axis=1), cell.y.mean(axis=1), cell.z.mean(axis=1)])
    return Geometry(
        section_types=types,
        path_distance_um=distance,
        length_um=np.asarray(cell.length, dtype=float),
        area_um2=np.asarray(cell.area, dtype=float),
        input_segments=np.flatnonzero(np.isin(types, ("basal", "apical", "oblique"))),
        soma_segment=soma,
        trunk_segment=trunk,
        trunk_segment_name=names[trunk],
        trunk_euclidean_um=float(np.linalg.norm(mid[trunk] - mid[soma])),
    )


# ----------------------------------------------------------------------------- input families


@dataclass(frozen=True)
class SynapseSpec:
    """One more synapse of the script: ``LFPy.Synapse(cell, idx=idx, syntype=syntype, weight=weight,
    **parameters)`` with ``set_spike_times(times)``."""

    idx: int
    syntype: str
    weight: float
    parameters: dict
    times: np.ndarray


@dataclass(frozen=True)
class CurrentClamp:
    """A somatic ``LFPy.StimIntElectrode(cell, idx=soma, pptype="IClamp", amp=, delay=, dur=)``."""

    amp_na: float
    delay_ms: float
    dur_ms: float


@dataclass
class FamilyInput:
    """Spike times (ms, sorted) of the excitatory ``AMPANMDA`` and inhibitory ``GABAA`` synapse of every
    input segment (empty lists: no such synapses), other synapses, and somatic current clamps."""

    exc: list[np.ndarray]
    inh: list[np.ndarray]
    synapses: list[SynapseSpec] = field(default_factory=list)
    clamps: list[CurrentClamp] = field(default_factory=list)

    def n_events(self) -> dict:
        """Total input events per kind (other synapses together) and the number of current clamps."""
        return {"exc": int(sum(t.size for t in self.exc)), "inh": int(sum(t.size for t in self.inh)),
                "other_synapses": int(sum(s.times.size for s in self.synapses)), "current_clamps": len(self.clamps)}

    def same_ms_extra_events(self) -> int:
        """Events an events model merges: a second (third, ...) event of one synapse in one 1 ms bin."""
        trains = self.exc + self.inh + [s.times for s in self.synapses]
        return int(sum(t.size - np.unique(np.floor(t)).size for t in trains))


def poisson_trains(rates_hz: np.ndarray, duration_ms: float, rng: np.random.Generator,
                   modulation: Callable[[np.ndarray], np.ndarray] | None = None,
                   max_modulation: float = 1.0) -> list[np.ndarray]:
    """Independent Poisson trains in continuous time on [0, duration_ms), one per rate.

    With ``modulation`` (a function of time in ms, values in [0, max_modulation]) the rate of
    train ``i`` is ``rates_hz[i] * modulation(t)``, drawn by thinning.
    """
    peak = np.asarray(rates_hz, dtype=float) * max_modulation
    counts = rng.poisson(peak * duration_ms / 1000.0)
    trains = []
    for count in counts:
        times = rng.uniform(0.0, duration_ms, count)
        if modulation is not None:
            times = times[rng.uniform(0.0, max_modulation, count) < modulation(times)]
        trains.append(np.sort(times))
    return trains


def published_poisson(geometry: Geometry, duration_ms: float, rng: np.random.Generator, exc_scale: float,
                      inh_scale: float, modulation: Callable[[np.ndarray], np.ndarray] | None = None,
                      max_modulation: float = 1.0) -> FamilyInput:
    """Poisson input at multiples of the published mean rates, optionally all multiplied by ``modulation``
    (see :func:`poisson_trains`); excitatory trains are drawn first."""
    exc_hz, inh_hz = geometry.published_rates_hz()
    return FamilyInput(poisson_trains(exc_scale * exc_hz, duration_ms, rng, modulation, max_modulation),
                       poisson_trains(inh_scale * inh_hz, duration_ms, rng, modulation, max_modulation))


def stationary(geometry: Geometry, duration_ms: float, rng: np.random.Generator,
               exc_scale: float, inh_scale: float) -> FamilyInput:
    """Stationary Poisson input at multiples of the published mean rates."""
    return published_poisson(geometry, duration_ms, rng, exc_scale, inh_scale)


def no_input(geometry: Geometry, duration_ms: float, rng: np.random.Generator) -> FamilyInput:
    """Synapses in place, no events."""
    empty = [np.empty(0) for _ in geometry.input_segments]
    return FamilyInput(empty, [np.empty(0) for _ in geometry.input_segments])


MODULATION_DEPTH = 0.8
MODULATION_EXC_SCALE = 1.5
THETA_HZ, GAMMA_HZ = 8.0, 40.0


def sinusoid(frequency_hz: float, depth: float, phase: float) -> Callable[[np.ndarray], np.ndarray]:
    """The gain ``1 + depth sin(2 pi f t + phase)`` as a function of time in ms."""
    def gain(t_ms: np.ndarray) -> np.ndarray:
        return 1.0 + depth * np.sin(2.0 * np.pi * frequency_hz * t_ms / 1000.0 + phase)
    return gain


def modulated(geometry: Geometry, duration_ms: float, rng: np.random.Generator, seed: int) -> FamilyInput:
    """Poisson input whose rates (1.5x published excitation, published inhibition) are all multiplied by
    ``1 + 0.8 sin(2 pi f t)``: theta (8 Hz) for even seeds, gamma (40 Hz) for odd ones, random phase."""
    frequency = THETA_HZ if seed % 2 == 0 else GAMMA_HZ
    gain = sinusoid(frequency, MODULATION_DEPTH, rng.uniform(0.0, 2.0 * np.pi))
    return published_poisson(geometry, duration_ms, rng, MODULATION_EXC_SCALE, 1.0, gain, 1.0 + MODULATION_DEPTH)


THETA_RANGE_HZ = (6.0, 8.0)
GAMMA_RANGE_HZ = (30.0, 80.0)
NESTED_GAMMA_DEPTH = 0.6


def theta_gamma(geometry: Geometry, duration_ms: float, rng: np.random.Generator) -> FamilyInput:
    """Poisson input at the published mean rates, all multiplied by ``(1 + 0.8 sin theta)(1 + 0.6 sin
    gamma)``: theta 6-8 Hz and gamma 30-80 Hz (uniform, random phases), the gamma's depth growing with
    the theta gain (largest in the theta peaks, nearly none in its troughs). The gain's mean is 1."""
    theta = sinusoid(rng.uniform(*THETA_RANGE_HZ), MODULATION_DEPTH, rng.uniform(0.0, 2.0 * np.pi))
    gamma = sinusoid(rng.uniform(*GAMMA_RANGE_HZ), NESTED_GAMMA_DEPTH, rng.uniform(0.0, 2.0 * np.pi))
    peak = (1.0 + MODULATION_DEPTH) * (1.0 + NESTED_GAMMA_DEPTH)
    return published_poisson(geometry, duration_ms, rng, 1.0, 1.0, lambda t: theta(t) * gamma(t), peak)


def volley_onsets(duration_ms: float, rng: np.random.Generator) -> np.ndarray:
    """Volley times: every 150 ms (+-20 ms jitter) from 250 ms until 50 ms before the end."""
    nominal = np.arange(VOLLEY_FIRST_MS, duration_ms - 50.0 + 1e-9, VOLLEY_INTERVAL_MS)
    return nominal + rng.uniform(-VOLLEY_JITTER_MS, VOLLEY_JITTER_MS, nominal.size) * (nominal > VOLLEY_FIRST_MS)


def add_volley(trains: list[np.ndarray], rows: np.ndarray, size: int, onset_ms: float,
               rng: np.random.Generator) -> None:
    """One synchronous volley: ``size`` synapses of ``rows`` (each once) fire within 3 ms of ``onset_ms``."""
    for row in rng.choice(rows, size=min(size, rows.size), replace=False):
        trains[row] = np.sort(np.append(trains[row], onset_ms + rng.uniform(0.0, VOLLEY_SPREAD_MS)))


def background(geometry: Geometry, duration_ms: float, rng: np.random.Generator) -> FamilyInput:
    """The volley families' background: stationary Poisson at a quarter of the published rates."""
    return stationary(geometry, duration_ms, rng, BACKGROUND_SCALE, BACKGROUND_SCALE)


TUFT_VOLLEY_SIZES = (70, 120)
BAC_TUFT_SIZE = 40
BAC_PERISOMATIC_SIZE = 140
BAC_DELAY_MS = (3.0, 7.0)
PERISOMATIC_VOLLEY_SIZES = (60, 220)


def add_tuft_volley(inputs: FamilyInput, geometry: Geometry, onset_ms: float, rng: np.random.Generator) -> None:
    """A synchronous excitatory volley of 70-120 of the tuft's synapses (>= 700 um)."""
    size = int(rng.integers(TUFT_VOLLEY_SIZES[0], TUFT_VOLLEY_SIZES[1] + 1))
    add_volley(inputs.exc, geometry.region("tuft"), size, onset_ms, rng)


def add_bac_pair(inputs: FamilyInput, geometry: Geometry, onset_ms: float, rng: np.random.Generator) -> None:
    """A BAC-style pair: a perisomatic/basal volley (140 synapses) and, 3-7 ms later, a tuft volley
    (40 synapses) that alone stays below the Ca-spike threshold."""
    add_volley(inputs.exc, geometry.region("perisomatic"), BAC_PERISOMATIC_SIZE, onset_ms, rng)
    add_volley(inputs.exc, geometry.region("tuft"), BAC_TUFT_SIZE, onset_ms + rng.uniform(*BAC_DELAY_MS), rng)


def tuft_volleys(geometry: Geometry, duration_ms: float, rng: np.random.Generator) -> FamilyInput:
    """Background plus synchronous excitatory volleys of 70-120 of the tuft's synapses (>= 700 um)."""
    inputs = background(geometry, duration_ms, rng)
    for onset in volley_onsets(duration_ms, rng):
        add_tuft_volley(inputs, geometry, onset, rng)
    return inputs


def bac(geometry: Geometry, duration_ms: float, rng: np.random.Generator) -> FamilyInput:
    """Background plus BAC-style pairs (:func:`add_bac_pair`)."""
    inputs = background(geometry, duration_ms, rng)
    for onset in volley_onsets(duration_ms, rng):
        add_bac_pair(inputs, geometry, onset, rng)
    return inputs


def perisomatic_volleys(geometry: Geometry, duration_ms: float, rng: np.random.Generator) -> FamilyInput:
    """Background plus excitatory volleys of 60-220 basal or proximal (<= 150 um) synapses."""
    inputs = background(geometry, duration_ms, rng)
    rows = geometry.region("perisomatic")
    sizes = PERISOMATIC_VOLLEY_SIZES
    for onset in volley_onsets(duration_ms, rng):
        add_volley(inputs.exc, rows, int(rng.integers(sizes[0], sizes[1] + 1)), onset, rng)
    return inputs


# held-out families: combinations and inputs no training simulation holds

SOMATIC_CURRENT_NA = 0.3


def volleys_on_theta_with_current(geometry: Geometry, duration_ms: float, rng: np.random.Generator) -> FamilyInput:
    """A quarter-rate background multiplied by a theta rhythm (``1 + 0.8 sin``, 6-8 Hz), tuft volleys or
    BAC pairs (even odds each) every 150 +- 20 ms, and a constant 0.3 nA somatic current from t = 0."""
    theta = sinusoid(rng.uniform(*THETA_RANGE_HZ), MODULATION_DEPTH, rng.uniform(0.0, 2.0 * np.pi))
    inputs = published_poisson(geometry, duration_ms, rng, BACKGROUND_SCALE, BACKGROUND_SCALE, theta,
                               1.0 + MODULATION_DEPTH)
    for onset in volley_onsets(duration_ms, rng):
        (add_tuft_volley if rng.uniform() < 0.5 else add_bac_pair)(inputs, geometry, onset, rng)
    inputs.clamps.append(CurrentClamp(SOMATIC_CURRENT_NA, 0.0, float(duration_ms)))
    return inputs


EXP2SYN_COUNT = (50, 200)
EXP2SYN_INHIBITORY_FRACTION = 0.2
EXP2SYN_WEIGHT_US = (0.001, 0.01)
EXP2SYN_RATE_HZ = (5.0, 20.0)
EXP2SYN_TAU1_MS = (0.3, 1.0)
EXP2SYN_TAU2_MS = {"exc": (2.0, 10.0), "inh": (8.0, 15.0)}
EXP2SYN_E_MV = {"exc": 0.0, "inh": -80.0}


def exp2syn_population(geometry: Geometry, duration_ms: float, rng: np.random.Generator) -> FamilyInput:
    """What a user writes after LFPy's examples: 50-200 ``Exp2Syn`` synapses on dendritic segments drawn
    in proportion to their area, 20 % inhibitory (e = -80 mV, tau2 8-15 ms), the rest excitatory (e = 0,
    tau2 2-10 ms), tau1 0.3-1 ms, weights 0.001-0.01 uS, each driven by Poisson spikes at 5-20 Hz
    (all uniform per synapse); no other synapses."""
    n = int(rng.integers(EXP2SYN_COUNT[0], EXP2SYN_COUNT[1] + 1))
    segments = geometry.random_input_segments(n, rng)
    inhibitory = np.zeros(n, dtype=bool)
    inhibitory[rng.choice(n, size=int(round(EXP2SYN_INHIBITORY_FRACTION * n)), replace=False)] = True
    tau1 = rng.uniform(*EXP2SYN_TAU1_MS, n)
    tau2 = np.where(inhibitory, rng.uniform(*EXP2SYN_TAU2_MS["inh"], n), rng.uniform(*EXP2SYN_TAU2_MS["exc"], n))
    weights = rng.uniform(*EXP2SYN_WEIGHT_US, n)
    trains = poisson_trains(rng.uniform(*EXP2SYN_RATE_HZ, n), duration_ms, rng)
    synapses = [SynapseSpec(int(idx), "Exp2Syn", float(weight),
                            {"e": EXP2SYN_E_MV["inh" if inh else "exc"], "tau1": float(t1), "tau2": float(t2)}, times)
                for idx, inh, t1, t2, weight, times in zip(segments, inhibitory, tau1, tau2, weights, trains)]
    return FamilyInput([], [], synapses)


CURRENT_STEPS_NA = (0.2, 0.6, 1.0, 1.5)
CURRENT_STEP_MS = 300.0
CURRENT_GAP_MS = 200.0
CURRENT_FIRST_MS = DISCARD_MS + 50.0
CURRENT_STEPS_DURATION_MS = int(CURRENT_FIRST_MS + len(CURRENT_STEPS_NA) * (CURRENT_STEP_MS + CURRENT_GAP_MS))
"""Steps at 250-550, 750-1050, 1250-1550 and 1750-2050 ms; the run ends 200 ms after the last."""


def current_steps(geometry: Geometry, duration_ms: float, rng: np.random.Generator) -> FamilyInput:
    """Somatic IClamp steps of 0.2, 0.6, 1.0 and 1.5 nA, 300 ms each, 200 ms apart, from 250 ms (those
    that end within the run); no synapses."""
    starts = CURRENT_FIRST_MS + np.arange(len(CURRENT_STEPS_NA)) * (CURRENT_STEP_MS + CURRENT_GAP_MS)
    return FamilyInput([], [], clamps=[CurrentClamp(amp, float(start), CURRENT_STEP_MS)
                                       for amp, start in zip(CURRENT_STEPS_NA, starts)
                                       if start + CURRENT_STEP_MS <= duration_ms])


@dataclass(frozen=True)
class Family:
    """One input family: how to draw its input, and its fixed duration (None: ``--duration-ms``)."""

    name: str
    description: str
    draw: Callable[[Geometry, float, np.random.Generator, int], FamilyInput]
    duration_ms: int | None = None
    seeded: bool = True
    held_out: bool = False
    """True: no simulation of the ``mixture`` training data holds this input (see the module docstring;
    ``current_steps``, new like the held-out families, is in that distribution)."""


def _unseeded(function):
    return lambda geometry, duration_ms, rng, seed: function(geometry, duration_ms, rng)


FAMILIES: dict[str, Family] = {family.name: family for family in (
    Family("rest", "no input events (synapses in place), 2 s", _unseeded(no_input), REST_DURATION_MS, seeded=False),
    Family("poisson_published", "stationary Poisson at the published mean rates (12.5 / 9.7 Hz per synapse)",
           _unseeded(partial(stationary, exc_scale=1.0, inh_scale=1.0))),
    Family("poisson_weak", "stationary Poisson at half the published rates",
           _unseeded(partial(stationary, exc_scale=0.5, inh_scale=0.5))),
    Family("poisson_strong", "stationary Poisson, 3.5x published excitation, published inhibition",
           _unseeded(partial(stationary, exc_scale=3.5, inh_scale=1.0))),
    Family("poisson_modulated", "Poisson, 1.5x published excitation, published inhibition, both x (1 + 0.8 "
           "sin 2 pi f t), f = 8 Hz (even seeds) or 40 Hz (odd seeds)", modulated),
    Family("tuft_volleys", "quarter-rate background + volleys of 70-120 tuft synapses (>= 700 um) every "
           "150 +- 20 ms", _unseeded(tuft_volleys)),
    Family("bac", "quarter-rate background + perisomatic/basal volley (140 synapses) then, 3-7 ms later, "
           "a sub-threshold tuft volley (40 synapses), every 150 +- 20 ms", _unseeded(bac)),
    Family("perisomatic_volleys", "quarter-rate background + volleys of 60-220 basal/proximal (<= 150 um) "
           "synapses every 150 +- 20 ms", _unseeded(perisomatic_volleys)),
    Family("theta_gamma", "Poisson at the published mean rates x (1 + 0.8 sin theta)(1 + 0.6 sin gamma), "
           "theta 6-8 Hz, gamma 30-80 Hz nested in the theta peaks", _unseeded(theta_gamma), held_out=True),
    Family("volleys_on_theta_with_current", "quarter-rate background x (1 + 0.8 sin theta), 6-8 Hz, + tuft "
           "volleys or BAC pairs every 150 +- 20 ms + 0.3 nA somatic IClamp throughout",
           _unseeded(volleys_on_theta_with_current), held_out=True),
    Family("exp2syn_population", "50-200 Exp2Syn (20 % e = -80 mV, tau2 8-15 ms; else e = 0, tau2 2-10 ms; "
           "tau1 0.3-1 ms; 0.001-0.01 uS) on area-weighted dendritic segments, Poisson 5-20 Hz each",
           _unseeded(exp2syn_population), held_out=True),
    Family("current_steps", "somatic IClamp steps 0.2, 0.6, 1.0, 1.5 nA, 300 ms each, 200 ms gaps, from "
           f"{CURRENT_FIRST_MS:.0f} ms; no synapses", _unseeded(current_steps), CURRENT_STEPS_DURATION_MS,
           seeded=False),
)}

HELD_OUT_FAMILIES = tuple(name for name, family in FAMILIES.items() if family.held_out)
"""Families no simulation of the ``mixture`` training data holds; the others are in its distribution."""


def training_distribution(name: str) -> str:
    """``"held out"`` or ``"in the training distribution"`` (of the ``mixture`` training data)."""
    return "held out" if FAMILIES[name].held_out else "in the training distribution"


def family_rng(name: str, seed: int) -> np.random.Generator:
    """Random generator of one family's input for one seed (independent of which families run)."""
    return np.random.default_rng(np.random.SeedSequence([BASE_SEED, zlib.crc32(name.encode()), int(seed)]))


# ----------------------------------------------------------------------------- the LFPy script


def lfpy_script(cell, inputs: FamilyInput, geometry: Geometry) -> dict:
    """The user's script, identical for both cells: synapses, current clamps, electrode, dipole, simulate.

    Returns the numpy results the metrics need (1 ms voltages of all segments, soma and trunk at
    the cell's dt, LFP and dipole on 1 ms) and the CPU and wall time of ``simulate()``.
    """
    synapses = []
    for syntype, trains in (("AMPANMDA", inputs.exc), ("GABAA", inputs.inh)):
        for idx, times in zip(geometry.input_segments, trains):
            synapse = LFPy.Synapse(cell, idx=int(idx), syntype=syntype, weight=1.0)
            synapse.set_spike_times(np.asarray(times, dtype=float))
            synapses.append(synapse)
    for spec in inputs.synapses:
        synapse = LFPy.Synapse(cell, idx=spec.idx, syntype=spec.syntype, weight=spec.weight, **spec.parameters)
        synapse.set_spike_times(np.asarray(spec.times, dtype=float))
        synapses.append(synapse)
    clamps = [LFPy.StimIntElectrode(cell, idx=geometry.soma_segment, pptype="IClamp", amp=clamp.amp_na,
                                    delay=clamp.delay_ms, dur=clamp.dur_ms) for clamp in inputs.clamps]
    n = len(ELECTRODE_Z_UM)
    electrode = LFPy.RecExtElectrode(cell, x=np.full(n, ELECTRODE_X_UM), y=np.zeros(n),
                                     z=np.array(ELECTRODE_Z_UM), sigma=SIGMA_S_PER_M)
    dipole = LFPy.CurrentDipoleMoment(cell)
    cpu, wall = time.process_time(), time.perf_counter()
    cell.simulate(probes=[electrode, dipole], rec_vmem=True)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    every_ms = int(round(1.0 / cell.dt))
    return {"vmem_1ms": cell.vmem[:, ::every_ms].copy(), "soma": cell.somav.copy(), "dt": float(cell.dt),
            "lfp_1ms": electrode.data[:, ::every_ms].copy(), "dipole_z_1ms": dipole.data[2, ::every_ms].copy(),
            "cpu_s": cpu, "wall_s": wall, "n_synapses": len(synapses), "n_clamps": len(clamps)}


NEURON_SOLVERS: dict[str, NeuronSolver] = {"backward-euler": BACKWARD_EULER_SOLVER, "crank-nicolson": DEFAULT_SOLVER}
"""``--neuron-solver`` choices: NEURON's default as LFPy leaves it (the events models' training data, and
this benchmark's numbers before 2026-12-03 pm), or the project's solver (the ``mixture`` data's)."""


def run_neuron(inputs: FamilyInput, geometry: Geometry, duration_ms: int,
               solver: NeuronSolver = BACKWARD_EULER_SOLVER) -> dict:
    """The script with ``l5pc(...)``, integrated by ``solver``; NEURON spikes are upward crossings of
    -25 mV at its dt."""
    cell = l5pc(tstop=float(duration_ms), dt=solver.dt)
    try:
        with solver_block(solver):
            result = lfpy_script(cell, inputs, geometry)
        result["trunk"] = cell.vmem[geometry.trunk_segment].copy()
        result["spikes"] = upward_crossing_times(cell.somav, cell.dt, NEURON_SPIKE_THRESHOLD_MV, REFRACTORY_MS)
    finally:
        cell.strip_hoc_objects()  # NetCons into this cell crash NEURON once the next cell deletes it
    return result


UNSUPPORTED_ERRORS = (UnsupportedFeatureError, SynapseMappingError)
"""What a surrogate raises for a script its model cannot take (e.g. an IClamp on an events model)."""


def run_surrogate(model: str, inputs: FamilyInput, geometry: Geometry, duration_ms: int) -> dict:
    """The script with ``SurrogateCell(model=...)``, cold (no history); spikes are ``cell.spike_times``.

    Raises one of :data:`UNSUPPORTED_ERRORS` (at the script line the model cannot take) for input the
    model does not support."""
    cell = SurrogateCell(model=model, tstop=float(duration_ms), dt=DT_MS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SynapseMappingWarning)
        result = lfpy_script(cell, inputs, geometry)
    result["input_kind"] = cell.input_kind
    result["trunk"] = cell.vmem[geometry.trunk_segment].copy()
    result["spikes"] = np.asarray(cell.spike_times, dtype=float).copy()
    result["spike_threshold_mv"] = float(cell.spike_threshold)
    result["warnings"] = sorted({str(w.message) for w in caught if issubclass(w.category, SynapseMappingWarning)})
    return result


# ----------------------------------------------------------------------------- metrics


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two traces; NaN when either is constant."""
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")


def in_window(times: np.ndarray, start: float, stop: float) -> np.ndarray:
    """Times in [start, stop]."""
    times = np.asarray(times, dtype=float)
    return times[(times >= start) & (times <= stop)]


def run_metrics(neuron_run: dict, surrogate_run: dict, duration_ms: int, discard_ms: int) -> dict:
    """Every metric of one run (one family, one seed) after ``discard_ms``."""
    # NEURON's own time loop can end a step short of tstop (t accumulates rounding errors; e.g. at
    # tstop = 2250 ms): compare the samples both have
    samples = min(run[key].shape[-1] for run in (neuron_run, surrogate_run) for key in ("vmem_1ms", "lfp_1ms"))
    samples = min(samples, *(run["soma"][:: int(round(1 / run["dt"]))].size for run in (neuron_run, surrogate_run)))
    duration_ms = min(duration_ms, samples - 1)
    kept = slice(discard_ms, duration_ms + 1)  # 1 ms samples at t = discard_ms ... duration_ms
    t_ms = np.arange(duration_ms + 1, dtype=float)[kept]
    spikes_n = in_window(neuron_run["spikes"], discard_ms, duration_ms)
    spikes_s = in_window(surrogate_run["spikes"], discard_ms, duration_ms)
    ca_n = in_window(upward_crossing_times(neuron_run["trunk"], neuron_run["dt"], CA_THRESHOLD_MV, CA_REFRACTORY_MS),
                     discard_ms, duration_ms)
    ca_s = in_window(upward_crossing_times(surrogate_run["trunk"], surrogate_run["dt"], CA_THRESHOLD_MV,
                                           CA_REFRACTORY_MS), discard_ms, duration_ms)
    v_n, v_s = neuron_run["vmem_1ms"][:, kept], surrogate_run["vmem_1ms"][:, kept]
    soma_n, soma_s = neuron_run["soma"][:: int(round(1 / neuron_run["dt"]))][kept], \
        surrogate_run["soma"][:: int(round(1 / surrogate_run["dt"]))][kept]
    all_spikes = np.concatenate([spikes_n, spikes_s])
    away = np.all(np.abs(t_ms[:, None] - all_spikes[None, :]) > SUBTHRESHOLD_EXCLUSION_MS, axis=1) \
        if all_spikes.size else np.ones(t_ms.size, dtype=bool)
    rest_start = max(discard_ms, duration_ms - REST_WINDOW_MS)
    last = t_ms >= rest_start
    return {
        "soma_spikes": {**spike_scores([spikes_n], [spikes_s], SPIKE_TOLERANCE_MS),
                        "neuron_times_ms": spikes_n.round(3).tolist(),
                        "surrogate_times_ms": spikes_s.round(3).tolist()},
        "ca_events": {**spike_scores([ca_n], [ca_s], CA_TOLERANCE_MS),
                      "neuron_times_ms": ca_n.round(3).tolist(), "surrogate_times_ms": ca_s.round(3).tolist()},
        "rmse_all_mv": float(np.sqrt(np.mean((v_n - v_s) ** 2))),
        "mse_all_mv2": float(np.mean((v_n - v_s) ** 2)),
        "rmse_soma_subthreshold_mv": float(np.sqrt(np.mean((soma_n[away] - soma_s[away]) ** 2))) if away.any()
        else float("nan"),
        "subthreshold_samples": int(away.sum()),
        "lfp_r": {f"{z:.0f}": pearson(neuron_run["lfp_1ms"][i, kept], surrogate_run["lfp_1ms"][i, kept])
                  for i, z in enumerate(ELECTRODE_Z_UM)},
        "dipole_z_r": pearson(neuron_run["dipole_z_1ms"][kept], surrogate_run["dipole_z_1ms"][kept]),
        "soma_mean_v_last_s_mv": {"neuron": float(soma_n[last].mean()), "surrogate": float(soma_s[last].mean()),
                                  "from_ms": float(rest_start)},
        "cpu_s": {"neuron": neuron_run["cpu_s"], "surrogate": surrogate_run["cpu_s"]},
        "wall_s": {"neuron": neuron_run["wall_s"], "surrogate": surrogate_run["wall_s"]},
    }


def _pooled_scores(runs: list[dict], key: str, tolerance: float) -> dict:
    true = [np.array(run[key]["neuron_times_ms"]) for run in runs]
    predicted = [np.array(run[key]["surrogate_times_ms"]) for run in runs]
    return spike_scores(true, predicted, tolerance)


def _mean(values) -> float:
    values = np.asarray(list(values), dtype=float)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def family_summary(runs: list[dict]) -> dict:
    """Pooled metrics of one family: spike scores over all its runs, RMSE from the pooled squared error,
    the soma's sub-threshold RMSE over all kept samples, correlations, voltages and times averaged."""
    subthreshold_sq = sum(run["rmse_soma_subthreshold_mv"] ** 2 * run["subthreshold_samples"]
                          for run in runs if run["subthreshold_samples"])
    subthreshold_n = sum(run["subthreshold_samples"] for run in runs)
    return {
        "runs": len(runs),
        "soma_spikes": _pooled_scores(runs, "soma_spikes", SPIKE_TOLERANCE_MS),
        "ca_events": _pooled_scores(runs, "ca_events", CA_TOLERANCE_MS),
        "rmse_all_mv": float(np.sqrt(np.mean([run["mse_all_mv2"] for run in runs]))),
        "rmse_soma_subthreshold_mv": float(np.sqrt(subthreshold_sq / subthreshold_n)) if subthreshold_n
        else float("nan"),
        "lfp_r": {z: _mean(run["lfp_r"][z] for run in runs) for z in runs[0]["lfp_r"]},
        "dipole_z_r": _mean(run["dipole_z_r"] for run in runs),
        "soma_mean_v_last_s_mv": {who: _mean(run["soma_mean_v_last_s_mv"][who] for run in runs)
                                  for who in ("neuron", "surrogate")},
        "cpu_s": {who: float(sum(run["cpu_s"][who] for run in runs)) for who in ("neuron", "surrogate")},
        "wall_s": {who: float(sum(run["wall_s"][who] for run in runs)) for who in ("neuron", "surrogate")},
    }


# ----------------------------------------------------------------------------- driver


def parse_arguments(argv=None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="l5pc-default", help="shipped model name or checkpoint path")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES), metavar="FAMILY",
                        help=f"input families (default: all): {', '.join(FAMILIES)}; held out of the mixture "
                             f"training data: {', '.join(HELD_OUT_FAMILIES)}")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS),
                        help="input seeds of every seeded family (rest runs once)")
    parser.add_argument("--duration-ms", type=int, default=DEFAULT_DURATION_MS,
                        help="simulated ms per run, the discarded start included (rest: --rest-duration-ms)")
    parser.add_argument("--rest-duration-ms", type=int, default=REST_DURATION_MS, help="simulated ms of the rest run")
    parser.add_argument("--discard-ms", type=int, default=DISCARD_MS, help="ms at the start left out of every metric")
    parser.add_argument("--out-dir", type=Path, default=Path("input_families_output"),
                        help="where input_families.json and input_families.md go")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch threads of the surrogate (default 1, like NEURON's one thread; with 2 on "
                             "this 2-core machine a 1 s run took 30 s instead of 2 s)")
    parser.add_argument("--neuron-solver", choices=list(NEURON_SOLVERS), default="backward-euler",
                        help="NEURON's integration: backward-euler (default; NEURON's own as LFPy leaves it, the "
                             "events models' training data and this benchmark's earlier numbers) or crank-nicolson "
                             "(the project's neuron_solver(), the mixture data drive models train on)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    for name in ("duration_ms", "rest_duration_ms"):
        if getattr(args, name) < args.discard_ms + 10:
            parser.error(f"--{name.replace('_', '-')} must exceed --discard-ms ({args.discard_ms}) by >= 10 ms")
    if args.discard_ms < 0:
        parser.error("--discard-ms must be >= 0")
    if args.torch_threads < 1:
        parser.error("--torch-threads must be >= 1")
    return args


def geometry_of_default_cell() -> Geometry:
    """The built-in cell's :class:`Geometry` (built once; the next cell built deletes it)."""
    return cell_geometry(l5pc(tstop=1.0, dt=DT_MS))


def neuron_solver(solver: NeuronSolver = BACKWARD_EULER_SOLVER) -> str:
    """NEURON's integration method as the runs used it."""
    return f"{solver.description}, fixed step (CVode off)"


def machine() -> dict:
    """Where the numbers were measured."""
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python":
            platform.python_version(), "torch": torch.__version__, "neuron": neuron.__version__,
            "lfpy": LFPy.__version__, "platform": platform.platform()}


def run(args: argparse.Namespace) -> dict:
    """Run every (family, seed) with both simulators; returns the report (also written to --out-dir)."""
    torch.set_num_threads(args.torch_threads)
    geometry = geometry_of_default_cell()
    plan = [(name, seed) for name in args.families
            for seed in (args.seeds if FAMILIES[name].seeded else [None])]
    solver = NEURON_SOLVERS[args.neuron_solver]
    runs: dict[str, list[dict]] = {name: [] for name in args.families}
    unsupported: dict[str, str] = {}
    threshold, input_kind = None, model_input_kind(args.model)
    for name, seed in tqdm(plan, desc="input families", unit="run", disable=args.no_progress):
        if name in unsupported:  # every seed builds the same kind of script
            continue
        family = FAMILIES[name]
        duration = family_duration(name, args)
        inputs = family.draw(geometry, float(duration), family_rng(name, seed or 0), seed or 0)
        try:  # the surrogate first: a script the model refuses fails at once, without a NEURON run
            surrogate_run = run_surrogate(args.model, inputs, geometry, duration)
        except UNSUPPORTED_ERRORS as error:
            unsupported[name] = f"{type(error).__name__}: {error}"
            continue
        neuron_run = run_neuron(inputs, geometry, duration, solver)
        threshold = surrogate_run["spike_threshold_mv"]
        metrics = run_metrics(neuron_run, surrogate_run, duration, args.discard_ms)
        runs[name].append({"seed": seed, "duration_ms": duration, "input_events": inputs.n_events(),
                           "same_ms_extra_events": inputs.same_ms_extra_events(),
                           "surrogate_warnings": surrogate_run["warnings"], **metrics})
    families = {}
    for name in args.families:
        family = FAMILIES[name]
        duration = family_duration(name, args)
        families[name] = {"description": family.description, "training_distribution": training_distribution(name),
                          "held_out": family.held_out, "supported": name not in unsupported,
                          "unsupported_error": unsupported.get(name), "duration_ms": duration,
                          "compared_ms": duration - args.discard_ms, "seeds": [run["seed"] for run in runs[name]],
                          "summary": family_summary(runs[name]) if runs[name] else None, "runs": runs[name]}
    rest = families.get("rest")
    report = {
        "settings": {
            "model": args.model, "families": args.families, "seeds": args.seeds, "duration_ms": args.duration_ms,
            "rest_duration_ms": args.rest_duration_ms, "discard_ms": args.discard_ms, "dt_ms": DT_MS,
            "neuron_solver": neuron_solver(solver), "model_input_kind": input_kind,
            "held_out_families": [name for name in args.families if FAMILIES[name].held_out],
            "training_distribution": "held out: no simulation of the mixture training data "
                                     "(surrogate_cell/data/stimulus.py, one family per simulation, one sinusoid) "
                                     "holds this input; in the training distribution: the mixture data holds it",
            "start": "cold: both at t = 0 with v_init and the input on; no history given to the surrogate",
            "neuron_spike_threshold_mv": NEURON_SPIKE_THRESHOLD_MV, "surrogate_spike_threshold_mv": threshold,
            "spike_refractory_ms": REFRACTORY_MS, "spike_tolerance_ms": SPIKE_TOLERANCE_MS,
            "ca_threshold_mv": CA_THRESHOLD_MV, "ca_refractory_ms": CA_REFRACTORY_MS,
            "ca_tolerance_ms": CA_TOLERANCE_MS, "subthreshold_exclusion_ms": SUBTHRESHOLD_EXCLUSION_MS,
            "electrodes": {"x_um": ELECTRODE_X_UM, "y_um": 0.0, "z_um": list(ELECTRODE_Z_UM),
                           "sigma_s_per_m": SIGMA_S_PER_M},
            "base_seed": BASE_SEED, "machine": machine(),
            "date": datetime.date.today().isoformat(),
        },
        "trunk_segment": {"index": geometry.trunk_segment, "name": geometry.trunk_segment_name,
                          "path_distance_um": float(geometry.path_distance_um[geometry.trunk_segment]),
                          "euclidean_distance_um": geometry.trunk_euclidean_um},
        "resting_voltage_mv": rest["summary"]["soma_mean_v_last_s_mv"] if rest and rest["summary"] else None,
        "families": families,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "input_families.json").write_text(json.dumps(report, indent=1, allow_nan=True))
    table = markdown_table(report)
    (args.out_dir / "input_families.md").write_text(table + "\n")
    return report


def model_input_kind(model: str) -> str:
    """``"events"`` or ``"drive"``: what the model reads (its checkpoint's ``cell.input_kind``)."""
    return str(load_checkpoint(resolve_model(model))[2]["cell"].get("input_kind", "events"))


def family_duration(name: str, args: argparse.Namespace) -> int:
    """Simulated ms of every run of one family."""
    return args.rest_duration_ms if name == "rest" else (FAMILIES[name].duration_ms or args.duration_ms)


def _f(value: float, digits: int = 2) -> str:
    return "nan" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def markdown_table(report: dict) -> str:
    """One row per family; the last column says whether the mixture training data holds its input."""
    z_names = [f"{z:.0f}" for z in ELECTRODE_Z_UM]
    header = ("| family | runs × compared ms | soma spikes N / S | spike F1 | Ca events N / S | Ca F1 | "
              "RMSE all (mV) | soma sub-thr. RMSE (mV) | LFP r at z = " + " / ".join(z_names) + " µm | dipole z r | "
              "soma V last 1 s N / S (mV) | CPU s N / S | mixture training data |")
    columns = header.count("|") - 1
    lines = [header, "|" + "---|" * columns]
    for name, family in report["families"].items():
        s = family["summary"]
        if s is None:
            error = " ".join(family["unsupported_error"].split()).replace("|", "/")
            error = error if len(error) <= 160 else error[:157] + "..."
            lines.append(f"| {name} | not supported by this model ({error}) |" + " |" * (columns - 3)
                         + f" {family['training_distribution']} |")
            continue
        spikes, ca = s["soma_spikes"], s["ca_events"]
        lines.append(
            f"| {name} | {s['runs']} × {family['compared_ms']} | {spikes['n_true']} / {spikes['n_predicted']} | "
            f"{_f(spikes['f1'])} | {ca['n_true']} / {ca['n_predicted']} | {_f(ca['f1'])} | "
            f"{_f(s['rmse_all_mv'])} | {_f(s['rmse_soma_subthreshold_mv'])} | "
            + " / ".join(_f(s["lfp_r"][z]) for z in z_names) + f" | {_f(s['dipole_z_r'])} | "
            f"{_f(s['soma_mean_v_last_s_mv']['neuron'], 1)} / {_f(s['soma_mean_v_last_s_mv']['surrogate'], 1)} | "
            f"{s['cpu_s']['neuron']:.0f} / {s['cpu_s']['surrogate']:.0f} | {family['training_distribution']} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    """Parse options, run, print the table; returns the report."""
    args = parse_arguments(argv)
    report = run(args)
    trunk = report["trunk_segment"]
    threshold = report["settings"]["surrogate_spike_threshold_mv"]
    threshold = "none ran" if threshold is None else f"{threshold:.1f} mV"
    print(f"model {args.model} ({report['settings']['model_input_kind']} input); cold start; first "
          f"{args.discard_ms} ms discarded; Ca events at {trunk['name']} "
          f"({trunk['path_distance_um']:.0f} um path, {trunk['euclidean_distance_um']:.0f} um from the soma); "
          f"N = NEURON ({report['settings']['neuron_solver']}; spikes: -25 mV crossings), "
          f"S = surrogate (cell.spike_times, threshold {threshold})")
    print(markdown_table(report))
    for name, family in report["families"].items():
        if not family["supported"]:
            print(f"{name}: not supported by this model: {family['unsupported_error']}")
    merged = {name: sum(run["same_ms_extra_events"] for run in family["runs"])
              for name, family in report["families"].items()}
    if report["settings"]["model_input_kind"] == "events" and any(merged.values()):
        print("input events the surrogate merged (2nd event of a synapse in one ms): "
              + ", ".join(f"{name} {n}" for name, n in merged.items() if n))
    print(f"written: {args.out_dir / 'input_families.json'}, {args.out_dir / 'input_families.md'}")
    return report


if __name__ == "__main__":
    main()
