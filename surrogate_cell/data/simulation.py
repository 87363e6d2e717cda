"""One training-data simulation of the L5PC: configuration, cell with synapses, run, recordings.

A :class:`CellSimulator` builds the Hay L5PC once, places one excitatory (``AMPANMDA``) and
one inhibitory (``GABAA``) synapse on every synapse-carrying segment and then runs any
number of simulations. Each simulation draws its synaptic input (see
:mod:`surrogate_cell.data.inputs`) for ``warmup_ms + duration_ms``, delivers the events at
whole ms through ``NetCon.event`` and integrates with NEURON's fixed step, by default
Crank–Nicolson at dt = 0.025 ms (:func:`surrogate_cell.cells.solver.neuron_solver`, the
settings every NEURON comparison of the project uses), in NEURON's own loop or, with
``engine="coreneuron"``, in CoreNEURON (bit-identical results, less CPU time). The input also
drives the warm-up, so the recorded window starts from a state typical of the input
regime rather than from rest; the warm-up is simulated and then discarded.

Recordings are NEURON point samples (``Vector.record(ref, Dt)``): the voltage of every
segment at every whole ms and the soma voltage ``soma_samples_per_ms`` times per ms.
Sample ``k`` is the voltage at exactly ``warmup_ms + k`` ms (``Dt`` is a whole number of
steps, and NEURON takes a ``Dt`` sample at the step that starts at that time). CoreNEURON
records every step instead (it cannot record at intervals), and the same samples are taken
from those after every stretch of the run.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from neuron import h

from surrogate_cell.cells import SECTION_TYPES, segment_path_distances
from surrogate_cell.cells.build import build_source_cell
from surrogate_cell.cells.layout import (
    SYNAPSE_MECHANISMS,
    SYNAPSE_SECTION_TYPES,
    cell_layout,
)
from surrogate_cell.cells.solver import (
    DEFAULT_SOLVER,
    SECONDORDER_METHODS,
    NeuronSolver,
    neuron_solver,
    run_coreneuron,
)
from surrogate_cell.config import (
    check_keys,
    dataclass_fields,
    dataclass_from_mapping,
    read_mapping,
    resolve_config,
)
from surrogate_cell.data.inputs import (
    InputConfig,
    PublishedInputConfig,
    SynapticInput,
    draw_inputs,
    events_to_spike_times,
    input_config_from_dict,
    input_config_to_dict,
)
from surrogate_cell.data.stimulus import (
    MECHANISMS,
    InputGeometry,
    MixtureInputConfig,
    Stimulus,
    draw_stimulus,
)
from surrogate_cell.spikes import SPIKE_THRESHOLD_MV, spike_peak_times

VOLTAGE_DTYPES = ("float32", "float16")
COMPRESSIONS = ("gzip", "lzf", "none")
TREE_OF_SECTION_TYPE = {"basal": "basal", "apical": "apical", "oblique": "apical",
                        "soma": "basal", "axon": "basal", "other": "basal"}
"""Input tree (see :data:`surrogate_cell.data.inputs.TREES`) of each synapse-carrying section type
(a recipe cell's soma and unnamed sections count with the basal tree)."""
CARRIER_SECTION_TYPES = (*SECTION_TYPES, "other")
"""Section types ``synapse_section_types`` may name (``other``: names not soma/axon/dend/apic)."""

_STEP_TOLERANCE = 1e-9
ENGINES = ("neuron", "coreneuron")
"""Who integrates: NEURON's own loop or CoreNEURON (same solver settings, bit-identical results)."""


class ConfigError(ValueError):
    """A simulation configuration (file) has unknown keys or invalid values."""


# --------------------------------------------------------------------------- configuration


def _default_inputs() -> dict:
    return input_config_to_dict(PublishedInputConfig())


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that defines how one training simulation is run and stored.

    ``dt`` (ms) is NEURON's fixed time step; one ms must be a whole number of steps.
    ``secondorder`` is NEURON's method: 2 Crank–Nicolson (default), 0 backward Euler (the
    project's method before; NEURON's default). Both default to
    :data:`surrogate_cell.cells.solver.DEFAULT_SOLVER` (``solver`` gives them as one object).
    ``warmup_ms`` (whole ms) is simulated with input and discarded. ``v_init`` (mV) and
    ``celsius`` (degC) initialise the cell. ``synapse_section_types`` lists the section
    types (of basal, apical, oblique) whose every segment gets one excitatory and one
    inhibitory synapse. ``soma_samples_per_ms`` must divide the steps per ms.
    ``spike_threshold_mv`` is the peak threshold of somatic spikes. ``voltage_dtype``
    (float32 or float16) and ``compression`` (gzip, lzf or none) set the storage.
    ``inputs`` is the synaptic input regime (:class:`~surrogate_cell.data.inputs.PublishedInputConfig`
    or :class:`~surrogate_cell.data.inputs.PoissonInputConfig` fields, as under ``inputs:`` in
    the data configs ``default.yaml``, ``poisson.yaml`` and ``published_high_drive.yaml``).
    """

    dt: float = DEFAULT_SOLVER.dt
    secondorder: int = DEFAULT_SOLVER.secondorder
    warmup_ms: int = 200
    v_init: float = -76.0
    celsius: float = 34.0
    synapse_section_types: tuple[str, ...] = SYNAPSE_SECTION_TYPES
    soma_samples_per_ms: int = 8
    spike_threshold_mv: float = SPIKE_THRESHOLD_MV
    voltage_dtype: str = "float32"
    compression: str = "gzip"
    inputs: dict = field(default_factory=_default_inputs)

    def __post_init__(self) -> None:
        for name, value in _validated_fields(self).items():
            object.__setattr__(self, name, value)

    @property
    def steps_per_ms(self) -> int:
        """Number of NEURON steps per ms."""
        return round(1.0 / self.dt)

    @property
    def solver(self) -> NeuronSolver:
        """NEURON's integration settings (``dt``, ``secondorder``) for :func:`neuron_solver`."""
        return NeuronSolver(dt=self.dt, secondorder=self.secondorder)

    @property
    def input_config(self) -> InputConfig | MixtureInputConfig:
        """The input regime as a typed config (:func:`draw_inputs` or, for the ``mixture``
        regime, :func:`~surrogate_cell.data.stimulus.draw_stimulus`)."""
        return parse_input_config(self.inputs)


def parse_input_config(values: Mapping) -> InputConfig | MixtureInputConfig:
    """The typed input config of ``{"regime": ..., **fields}`` (``published``, ``poisson`` or
    ``mixture``); raises ValueError naming an unknown regime or field."""
    if isinstance(values, Mapping) and values.get("regime") == MixtureInputConfig.regime:
        fields = {key: value for key, value in values.items() if key != "regime"}
        return dataclass_from_mapping(MixtureInputConfig, fields, "input regime 'mixture'", ValueError, "field")
    return input_config_from_dict(values)


def _validated_fields(config: SimulationConfig) -> dict:
    """Coerced values of all fields of ``config``; raises ConfigError naming a bad field."""
    values = {
        "dt": _positive_float(config.dt, "dt"),
        "secondorder": _secondorder(config.secondorder),
        "warmup_ms": _whole_number(config.warmup_ms, "warmup_ms", minimum=0),
        "v_init": _float(config.v_init, "v_init"),
        "celsius": _float(config.celsius, "celsius"),
        "synapse_section_types": _section_types(config.synapse_section_types),
        "soma_samples_per_ms": _whole_number(config.soma_samples_per_ms, "soma_samples_per_ms", 1),
        "spike_threshold_mv": _float(config.spike_threshold_mv, "spike_threshold_mv"),
        "voltage_dtype": _choice(config.voltage_dtype, "voltage_dtype", VOLTAGE_DTYPES),
        "compression": _choice(config.compression, "compression", COMPRESSIONS),
        "inputs": _normalised_inputs(config.inputs),
    }
    _check_sampling(values["dt"], values["soma_samples_per_ms"])
    return values


def _float(value, name: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None


def _positive_float(value, name: str) -> float:
    number = _float(value, name)
    if not number > 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")
    return number


def _whole_number(value, name: str, minimum: int) -> int:
    number = _float(value, name)
    if number != round(number) or number < minimum:
        raise ConfigError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(round(number))


def _secondorder(value) -> int:
    number = _whole_number(value, "secondorder", minimum=0)
    if number not in SECONDORDER_METHODS:
        raise ConfigError(f"secondorder must be 0 (backward Euler), 1 or 2 (Crank-Nicolson), got {value!r}")
    return number


def _choice(value, name: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def _section_types(value) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise ConfigError(f"synapse_section_types must be a non-empty list, got {value!r}")
    unknown = sorted(set(value) - set(CARRIER_SECTION_TYPES))
    if unknown:
        raise ConfigError(
            f"synapse_section_types has unknown type(s) {unknown}; valid: {list(CARRIER_SECTION_TYPES)}"
        )
    return tuple(t for t in CARRIER_SECTION_TYPES if t in value)  # canonical order


def _normalised_inputs(value) -> dict:
    try:
        return input_config_to_dict(parse_input_config(value))
    except (ValueError, TypeError) as error:
        raise ConfigError(f"inputs: {error}") from None


def _check_sampling(dt: float, soma_samples_per_ms: int) -> None:
    steps = round(1.0 / dt)
    if steps < 1 or abs(steps * dt - 1.0) > _STEP_TOLERANCE:
        raise ConfigError(f"dt must divide 1 ms into whole steps (e.g. 0.025), got {dt}")
    if steps % soma_samples_per_ms:
        raise ConfigError(
            f"soma_samples_per_ms ({soma_samples_per_ms}) must divide the {steps} steps per ms "
            f"of dt = {dt}, so that every soma sample falls on a time step"
        )


def simulation_config_from_dict(values: Mapping, source: str = "simulation config") -> SimulationConfig:
    """Build a :class:`SimulationConfig` from plain data; missing keys take their defaults.

    Unknown keys or invalid values raise one :class:`ConfigError` that names ``source``.
    """
    if not isinstance(values, Mapping):
        raise ConfigError(f"{source} must be a mapping of keys to values, got {type(values).__name__}")
    check_keys(values, dataclass_fields(SimulationConfig), source, ConfigError)
    try:
        return SimulationConfig(**values)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def simulation_config_to_dict(config: SimulationConfig) -> dict:
    """Plain-data (JSON/YAML) form of ``config``; the inverse of :func:`simulation_config_from_dict`."""
    values = dataclasses.asdict(config)
    values["synapse_section_types"] = list(config.synapse_section_types)
    return values


def load_simulation_config(path: str | Path) -> SimulationConfig:
    """Read a :class:`SimulationConfig` from a YAML file or a packaged config name
    (``data/default.yaml``, ``data/poisson.yaml``, ...; see :func:`surrogate_cell.config.resolve_config`)."""
    path = resolve_config(path, ConfigError)
    return simulation_config_from_dict(read_mapping(path, ConfigError), source=str(path))


# --------------------------------------------------------------------------- seeds


def simulation_seed_sequence(base_seed: int, index: int) -> np.random.SeedSequence:
    """Seed of simulation ``index``: independent of worker count and order."""
    return np.random.SeedSequence(entropy=int(base_seed), spawn_key=(int(index),))


def simulation_rng(base_seed: int, index: int) -> np.random.Generator:
    """Random generator that draws the input of simulation ``index``."""
    return np.random.default_rng(simulation_seed_sequence(base_seed, index))


# --------------------------------------------------------------------------- cell layout


# --------------------------------------------------------------------------- simulation


@dataclass
class SimulationResult:
    """What one simulation produced, ready to be stored.

    ``vmem`` (n_segments, duration_ms) holds the voltage of every segment at whole ms
    ``warmup_ms + k`` (``voltage_dtype``); ``soma_v`` the soma voltage sampled
    ``soma_samples_per_ms`` times per ms over the same window; ``spike_times`` the
    somatic spike peaks (ms from the window start, detected before the dtype cast).
    ``exc`` and ``inh`` are the bool input events of the whole simulated time
    (warm-up included), one row per synapse-carrying segment, for the ``published`` and
    ``poisson`` regimes; the ``mixture`` regime gives a ``stimulus`` instead (None otherwise).
    """

    index: int
    base_seed: int
    warmup_ms: int
    vmem: np.ndarray
    soma_v: np.ndarray
    spike_times: np.ndarray
    exc: np.ndarray | None
    inh: np.ndarray | None
    inputs_interval_ms: float | None
    inputs_smoothing_sigma_ms: float | None
    inputs_exc_totals: np.ndarray | None
    inputs_inh_totals: np.ndarray | None
    wall_time_s: float
    segment_hash: str
    engine: str = "neuron"
    stimulus: Stimulus | None = None

    @property
    def duration_ms(self) -> int:
        """Length of the recorded window (ms)."""
        return self.vmem.shape[1]

    @property
    def simulated_ms(self) -> int:
        """Simulated time including the warm-up (ms)."""
        return self.warmup_ms + self.duration_ms


class _Recorders:
    """Point-sample recorders of all segment voltages (1 ms) and the soma voltage."""

    def __init__(self, segments: list, soma_segment, soma_samples_per_ms: int):
        self.segment_vectors = [h.Vector() for _ in segments]
        for vector, segment in zip(self.segment_vectors, segments):
            vector.record(segment._ref_v, 1.0)
        self.soma_vector = h.Vector()
        self.soma_vector.record(soma_segment._ref_v, 1.0 / soma_samples_per_ms)
        self.soma_samples_per_ms = soma_samples_per_ms

    def voltages(self, start_ms: int, n_ms: int) -> np.ndarray:
        """(n_segments, n_ms) float64 voltages at whole ms ``start_ms .. start_ms + n_ms - 1``."""
        if len(self.segment_vectors[0]) < start_ms + n_ms:
            raise RuntimeError(f"NEURON recorded {len(self.segment_vectors[0])} samples, "
                               f"expected at least {start_ms + n_ms}")
        return np.stack([vector.as_numpy()[start_ms:start_ms + n_ms] for vector in self.segment_vectors])

    def soma(self, start_ms: int, n_ms: int) -> np.ndarray:
        """Soma voltage samples (float64) in ``[start_ms, start_ms + n_ms)``."""
        rate = self.soma_samples_per_ms
        return self.soma_vector.as_numpy()[start_ms * rate:(start_ms + n_ms) * rate].copy()

    def take(self) -> None:
        """After each stretch of a run (nothing to do: NEURON keeps the samples)."""


class _SteppedRecorders(_Recorders):
    """The same samples from every-step recordings (CoreNEURON), taken and cleared after every stretch."""

    def __init__(self, segments: list, soma_segment, soma_samples_per_ms: int):
        self.segment_vectors = [h.Vector() for _ in segments]
        for vector, segment in zip(self.segment_vectors, segments):
            vector.record(segment._ref_v)
        self.soma_vector = h.Vector()
        self.soma_vector.record(soma_segment._ref_v)
        self.soma_samples_per_ms = soma_samples_per_ms
        self.reset()

    def reset(self) -> None:
        """Forget the samples of an earlier run (call before ``finitialize``)."""
        self._steps_taken = 0
        self._segment_parts: list[np.ndarray] = []
        self._soma_parts: list[np.ndarray] = []

    def take(self) -> None:
        """Keep the whole-ms and soma samples of the steps recorded since the last call; clear the
        vectors. Call it during the run (the grid is that of the present ``h.dt``)."""
        steps_per_ms = round(1.0 / h.dt)
        soma_every = steps_per_ms // self.soma_samples_per_ms
        first = self._steps_taken  # step index of this stretch's first sample (0: t = 0)
        self._segment_parts.append(np.stack([vector.as_numpy()[-first % steps_per_ms::steps_per_ms].copy()
                                             for vector in self.segment_vectors]))
        self._soma_parts.append(self.soma_vector.as_numpy()[-first % soma_every::soma_every].copy())
        self._steps_taken += len(self.soma_vector)
        for vector in (*self.segment_vectors, self.soma_vector):
            vector.resize(0)

    def voltages(self, start_ms: int, n_ms: int) -> np.ndarray:
        samples = np.concatenate(self._segment_parts, axis=1)
        if samples.shape[1] < start_ms + n_ms:
            raise RuntimeError(f"CoreNEURON recorded {samples.shape[1]} samples, expected at least {start_ms + n_ms}")
        return samples[:, start_ms:start_ms + n_ms]

    def soma(self, start_ms: int, n_ms: int) -> np.ndarray:
        rate = self.soma_samples_per_ms
        return np.concatenate(self._soma_parts)[start_ms * rate:(start_ms + n_ms) * rate].copy()


def _check_synapse_carriers(cell, layout, synapse_section_types) -> None:
    if layout.input_segments.size:
        return
    rule = " that the recipe's synapse_sections also match" if hasattr(cell, "synapse_mask") else ""
    raise ConfigError(f"No segment of the cell carries synapses: none is of the section types "
                      f"{list(synapse_section_types)}{rule}; the cell's section types are "
                      f"{sorted(set(layout.section_types.tolist()))}. Set synapse_section_types in the data "
                      "config to types the cell has.")


class CellSimulator:
    """A cell with its synapses, built once in this process and run many times.

    ``morphology`` names the cell (:func:`~surrogate_cell.cells.build.build_source_cell`): None for
    the built-in L5PC, a morphology file for the Hay biophysics on it, or a cell recipe (``.yaml``).

    ``record=False`` leaves out all recorders (used to time raw NEURON); such a simulator
    can :meth:`run_inputs` but not :meth:`simulate`. ``engine`` (:data:`ENGINES`) chooses
    NEURON's own loop or CoreNEURON, which gives bit-identical results for less CPU time and
    compiles the mechanisms' CoreNEURON library on first use
    (:func:`surrogate_cell.mechanisms.coreneuron_library`).

    Building another LFPy cell in the same process deletes this one's sections (LFPy's
    default), and NEURON crashes at the next initialisation if NetCons still target
    synapses on deleted sections. So :meth:`close` a simulator (or use it as a context
    manager) before another cell is built in the same process.
    """

    def __init__(self, config: SimulationConfig, morphology: str | Path | None = None,
                 record: bool = True, engine: str = "neuron"):
        if engine not in ENGINES:
            raise ConfigError(f"engine must be one of {list(ENGINES)}, got {engine!r}")
        self.config = config
        self.engine = engine
        self.cell = build_source_cell(morphology, dt=config.dt, v_init=config.v_init, celsius=config.celsius)
        self.layout = cell_layout(self.cell, config.synapse_section_types)
        _check_synapse_carriers(self.cell, self.layout, config.synapse_section_types)
        self.segment_hash = self.layout.segment_hash
        segments = [seg for sec in self.cell.allseclist for seg in sec]
        self._segments = segments
        self._path_distances = None
        self._synapses, self._netcons = self._create_synapses(segments)
        soma = segments[self.layout.soma_segment]
        if not record:
            self._recorders = None
        elif engine == "coreneuron":
            self._recorders = _SteppedRecorders(segments, soma, config.soma_samples_per_ms)
        else:
            self._recorders = _Recorders(segments, soma, config.soma_samples_per_ms)
        h.load_file("stdrun.hoc")

    def close(self) -> None:
        """Release the synapses, NetCons and recorders (the cell itself is safe to keep)."""
        self._netcons = {kind: [] for kind in SYNAPSE_MECHANISMS}
        self._synapses = []
        self._recorders = None

    def __enter__(self) -> CellSimulator:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _create_synapses(self, segments: list) -> tuple[list, dict]:
        """One synapse of each kind on every input segment, each fed by a source-less NetCon."""
        synapses, netcons = [], {}
        for kind, mechanism in SYNAPSE_MECHANISMS.items():
            netcons[kind] = []
            for index in self.layout.input_segments:
                synapse = getattr(h, mechanism)(segments[index])
                netcon = h.NetCon(None, synapse)
                netcon.weight[0] = 1.0
                synapses.append(synapse)
                netcons[kind].append(netcon)
        return synapses, netcons

    def draw_inputs(self, base_seed: int, index: int, duration_ms: int) -> SynapticInput:
        """Input events of simulation ``index`` over warm-up plus ``duration_ms``."""
        layout = self.layout
        trees = [TREE_OF_SECTION_TYPE[t] for t in layout.section_types[layout.input_segments]]
        lengths = layout.length[layout.input_segments]
        total_ms = self.config.warmup_ms + duration_ms
        return draw_inputs(self.config.input_config, trees, lengths, total_ms,
                           simulation_rng(base_seed, index))

    def run_inputs(self, inputs: SynapticInput | Stimulus) -> None:
        """Initialise the cell and integrate through all of ``inputs`` (warm-up included): the
        binary events of the published/Poisson regimes on the cell's own synapses, or a
        :class:`~surrogate_cell.data.stimulus.Stimulus` with synapses and a somatic current of its own."""
        if isinstance(inputs, Stimulus):
            with _StimulusObjects(self, inputs) as objects:
                self._integrate(inputs.n_ms, objects.queue_events)
        else:
            self._integrate(inputs.n_ms, lambda: self._queue_events(inputs))

    def _integrate(self, n_ms: int, queue_events) -> None:
        """finitialize, ``queue_events()`` (after it: finitialize empties the event queue), run ``n_ms``."""
        # the solver (also CVode off: another user of NEURON may have switched it on) for this run only
        with neuron_solver(self.config.solver):
            h.celsius = self.config.celsius
            if self.engine == "neuron":
                h.finitialize(self.config.v_init)
                queue_events()
                h.continuerun(float(n_ms))
                return
            if self._recorders is not None:
                self._recorders.reset()
            h.finitialize(self.config.v_init)
            queue_events()
            run_coreneuron(float(n_ms),
                           after_chunk=None if self._recorders is None else self._recorders.take)

    def input_geometry(self) -> InputGeometry:
        """Where a :class:`~surrogate_cell.data.stimulus.Stimulus` may put synapses: the soma and
        the synapse-carrying segments."""
        layout = self.layout
        if self._path_distances is None:
            self._path_distances = segment_path_distances(self.cell)
        return InputGeometry(
            section_types=layout.section_types, length_um=layout.length,
            path_distance_um=self._path_distances,
            synapse_segments=np.union1d([layout.soma_segment], layout.input_segments))

    def _queue_events(self, inputs: SynapticInput) -> None:
        for kind, events in (("exc", inputs.exc), ("inh", inputs.inh)):
            for netcon, times in zip(self._netcons[kind], events_to_spike_times(events)):
                for time_ms in times.tolist():
                    netcon.event(time_ms)

    def simulate(self, base_seed: int, index: int, duration_ms: int) -> SimulationResult:
        """Draw the input of simulation ``index``, run it and collect the recordings."""
        config = self.config.input_config
        if isinstance(config, MixtureInputConfig):
            inputs = draw_stimulus(config, self.input_geometry(), self.config.warmup_ms + duration_ms,
                                   simulation_rng(base_seed, index))
        else:
            inputs = self.draw_inputs(base_seed, index, duration_ms)
        return self.simulate_inputs(inputs, duration_ms, base_seed, index)

    def simulate_inputs(self, inputs: SynapticInput | Stimulus, duration_ms: int, base_seed: int = -1,
                        index: int = -1) -> SimulationResult:
        """Run given input (warm-up included, e.g. a perturbed copy of :meth:`draw_inputs`) and
        collect the recordings of its last ``duration_ms``; ``base_seed`` and ``index`` only label
        the result."""
        if self._recorders is None:
            raise RuntimeError("this CellSimulator has no recorders (built with record=False, or closed)")
        if inputs.n_ms != self.config.warmup_ms + duration_ms:
            raise ValueError(f"the input spans {inputs.n_ms} ms, but warm-up + duration is "
                             f"{self.config.warmup_ms + duration_ms} ms: draw it for the same duration")
        started = time.perf_counter()
        self.run_inputs(inputs)
        return self._collect(base_seed, index, duration_ms, inputs, time.perf_counter() - started)

    def _collect(self, base_seed: int, index: int, duration_ms: int, inputs: SynapticInput | Stimulus,
                 wall_time_s: float) -> SimulationResult:
        config, warmup = self.config, self.config.warmup_ms
        stimulus = isinstance(inputs, Stimulus)
        soma_v = self._recorders.soma(warmup, duration_ms)
        spikes = spike_peak_times(soma_v, 1.0 / config.soma_samples_per_ms, config.spike_threshold_mv)
        return SimulationResult(
            index=int(index),
            base_seed=int(base_seed),
            warmup_ms=warmup,
            vmem=self._recorders.voltages(warmup, duration_ms).astype(config.voltage_dtype),
            soma_v=soma_v.astype(config.voltage_dtype),
            spike_times=spikes,
            exc=None if stimulus else inputs.exc,
            inh=None if stimulus else inputs.inh,
            inputs_interval_ms=None if stimulus else inputs.interval_ms,
            inputs_smoothing_sigma_ms=None if stimulus else inputs.smoothing_sigma_ms,
            inputs_exc_totals=None if stimulus else inputs.exc_totals,
            inputs_inh_totals=None if stimulus else inputs.inh_totals,
            wall_time_s=wall_time_s,
            segment_hash=self.segment_hash,
            engine=self.engine,
            stimulus=inputs if stimulus else None,
        )


class _StimulusObjects:
    """The NEURON objects of one :class:`~surrogate_cell.data.stimulus.Stimulus` on a simulator's
    cell: its synapses, one source-less NetCon each, and a somatic IClamp whose amplitude is played
    from ``soma_current_na`` (one value per ms); all released on exit."""

    def __init__(self, simulator: CellSimulator, stimulus: Stimulus):
        self.stimulus = stimulus
        segments = simulator._segments
        self.synapses, self.netcons = [], []
        for row in range(stimulus.n_synapses):  # building NEURON objects: once per simulation
            synapse = getattr(h, MECHANISMS[stimulus.synapse_mechanism[row]])(
                segments[stimulus.synapse_segment[row]])
            _set_kinetics(synapse, MECHANISMS[stimulus.synapse_mechanism[row]], stimulus, row)
            netcon = h.NetCon(None, synapse)
            netcon.weight[0] = float(stimulus.synapse_weight[row])
            self.synapses.append(synapse)
            self.netcons.append(netcon)
        soma = segments[simulator.layout.soma_segment]
        self.clamp = h.IClamp(soma)
        self.clamp.delay, self.clamp.dur, self.clamp.amp = 0.0, 1e9, 0.0
        # piecewise constant as a continuous play with a repeated time at every ms: the one kind
        # of Vector.play CoreNEURON takes over (its step-wise play aborts the transfer)
        bounds = np.arange(stimulus.n_ms + 1, dtype=np.float64)
        self.times = h.Vector(np.repeat(bounds, 2)[1:-1])
        self.current = h.Vector(np.repeat(stimulus.soma_current_na.astype(np.float64), 2))
        self.current.play(self.clamp._ref_amp, self.times, 1)

    def queue_events(self) -> None:
        """Queue every event on its synapse's NetCon (call after ``finitialize``)."""
        netcons = self.netcons
        for synapse, time_ms in zip(self.stimulus.event_synapse.tolist(), self.stimulus.event_time_ms.tolist()):
            netcons[synapse].event(time_ms)

    def __enter__(self) -> _StimulusObjects:
        return self

    def __exit__(self, *exc_info) -> None:
        self.current.play_remove()
        self.netcons, self.synapses, self.clamp = [], [], None


def _set_kinetics(synapse, mechanism: str, stimulus: Stimulus, row: int) -> None:
    if mechanism == "ExpSyn":
        synapse.tau, synapse.e = stimulus.synapse_tau_decay[row], stimulus.synapse_e[row]
    elif mechanism == "Exp2Syn":
        synapse.tau1, synapse.tau2 = stimulus.synapse_tau_rise[row], stimulus.synapse_tau_decay[row]
        synapse.e = stimulus.synapse_e[row]
