"""``SurrogateCell``: an ``LFPy.Cell`` whose ``simulate()`` runs a trained surrogate instead of NEURON.

Typical use — the only line that differs from an ordinary LFPy script is the cell::

    cell = SurrogateCell(model="path/to/best.pt", tstop=500.0)   # instead of l5pc(tstop=500.0)
    synapse = LFPy.Synapse(cell, idx=cell.get_closest_idx(z=800.0), syntype="AMPANMDA",
                           weight=1.0, e=0.0)
    synapse.set_spike_times(np.array([10.3, 42.0]))
    cell.simulate(probes=[electrode], rec_vmem=True, rec_imem=True)

The cell geometry is built by the model's own cell recipe (e.g. ``l5pc``), so everything
geometric in LFPy (``set_pos``, ``set_rotation``, ``get_idx``, probes, ...) is LFPy's own
code. ``simulate`` never runs NEURON: it maps the user's synapses onto the model's input
channels, steps the model 1 ms at a time and derives ``imem`` from ``vmem`` with LFPy's
vmem -> imem matrix, then fills the probes exactly as LFPy does (``M_probe @ imem``).

A checkpoint's *input kind* (``model_meta["cell"]["input_kind"]``) decides what the model reads:
``"events"`` (older checkpoints, which name none): binary events per synapse-carrying segment,
excitatory and inhibitory; ``"drive"``: every segment's synaptic conductance per receptor
(ampa, nmda unblocked, gaba) and the current injected into the soma, as 1 ms bin means
(:func:`surrogate_cell.synapses.drive_channels`), computed exactly from the synapses' own
kinetics and event times.

Rules chosen here for event models (the model only knows what it was trained on):

- **Time**: LFPy's conventions. The model steps 1 ms, from the whole ms at or before
  ``tstart`` (``tstart < 0`` is a warm-up, as in LFPy) to the whole ms at or after ``tstop``;
  ``tvec``, ``somav``, ``vmem``, ``imem``, probe data and synapse recordings come on the cell's
  own ``dt`` grid ``0, dt, ..., tstop``, as LFPy builds it, with values between two model
  steps linearly interpolated (the model knows nothing faster than 1 ms).
- **Start**: by default a ``W`` ms (the model window) history with every segment at
  ``v_init`` and no input events — the state NEURON's ``finitialize(v_init)`` starts from.
  Give ``history_mv`` (segments, >= W ms, e.g. from a NEURON warm-up) for exact comparisons.
- **Synapse kind**: the project's trained mechanisms by name (``AMPANMDA`` excitatory,
  ``GABAA`` inhibitory; their parameters must keep the trained values). Any other
  mechanism by its reversal potential ``e``: ``e >= -40 mV`` excitatory, ``e <= -60 mV``
  inhibitory, in between an error; it then stands in for the trained synapse of that kind
  (a :class:`SynapseMappingWarning` says its own kinetics and conductance are not modelled).
- **Weight**: must be the trained 1.0 (one activation of the trained synapse).
- **Segment**: only segments with input channels (the trained synapse-carrying dendrites).
- **Spike times**: a spike at ``t`` is an event of the model step ``[floor(t), floor(t) + 1)``
  (delivered at the step's start, as in training). Spikes after the last step never act;
  spikes before ``tstart`` are an error.
- **Several events in one bin of one channel** (one synapse or several on the same segment):
  the model was trained on binary events, so they count as one event, with a
  :class:`SynapseMappingWarning` (summing would feed inputs the model never saw).
- **Current clamps** (``LFPy.StimIntElectrode``): an error (never trained with injected current).

Rules for drive models (time and spike trains as above; the conductances are exact, nothing
is binned to whole ms before the bin means are taken, nothing is merged):

- **Synapse kind**: ``AMPANMDA`` (ampa + nmda), ``GABAA`` (gaba), ``ExpSyn`` and ``Exp2Syn``
  (ampa for ``e`` in :data:`~surrogate_cell.synapses.EXCITATORY_REVERSAL_MV`, gaba for ``e`` in
  :data:`~surrogate_cell.synapses.INHIBITORY_REVERSAL_MV`), each with its own parameters (the
  mechanism's defaults unless the synapse sets them). ``AMPANMDA`` must also keep its reversal
  potential in the excitatory range and ``mg`` at 1 mM (the model learned the Mg2+ block at
  1 mM), ``GABAA`` in the inhibitory range; time constants must be finite with
  ``0 < rise < decay``. Any other mechanism is an error.
- **Weight**: any finite weight >= 0, as long as one event adds at most
  :data:`MAX_EVENT_PEAK_CONDUCTANCE_US` of peak conductance per receptor (0.05 uS ampa/gaba,
  0.005 uS nmda; the training data reached about 0.02 uS and 0.002 uS).
- **Segment**: the soma and every segment the model was trained with synapses on (all but the
  axon); any number of synapses per segment (their conductances add up).
- **Current clamps**: ``LFPy.StimIntElectrode(cell, idx=cell.soma_segment, pptype="IClamp",
  amp=..., dur=..., delay=...)``, any number (they add up), enter as the soma-current channel
  (exact 1 ms bin means); other point processes, or an ``IClamp`` off the soma, are an error.
- **Start**: by default the same ``v_init`` history with no conductance and no current.
- The input is computed block by block while the model steps (memory grows with the number of
  events, not with ``tstop``); :meth:`SurrogateCell.model_input` gives it dense, for short runs.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import h5py
import LFPy
import numpy as np
import torch

from surrogate_cell.cells.build import build_stored_cell
from surrogate_cell.cells.layout import EVENT_KINDS, SYNAPSE_MECHANISMS, cell_layout
from surrogate_cell.cells.recipe import CellRecipeError
from surrogate_cell.checkpoint import CheckpointError, check_cell, load_checkpoint
from surrogate_cell.device import select_device, select_dtype
from surrogate_cell.engine import free_run, make_stepper
from surrogate_cell.input_events import MODEL_STEP_MS, InputEvents, SynapseMappingWarning
from surrogate_cell.netstim import NETCON_DELAY_MS, NetStimSettings, netstim_spike_times
from surrogate_cell.pretrained import resolve_model
from surrogate_cell.spikes import (
    REFRACTORY_MS,
    SPIKE_THRESHOLD_MV,
    upward_crossing_times,
)
from surrogate_cell.synapses import (
    DRIVE_MECHANISMS,
    EXCITATORY_REVERSAL_MV,
    INHIBITORY_REVERSAL_MV,
    RECEPTORS,
    ConductanceDrive,
    DriveSynapses,
    SynapseKinetics,
    as_recorded_by_neuron,
    bin_mean_current,
    drive_channel_count,
    drive_channels,
    drive_receptors,
    synapse_kinetics,
    synaptic_current_na,
)

EXCITATORY_MIN_E_MV = -40.0
"""Synapses of other mechanisms with reversal potential at or above this are excitatory."""

INHIBITORY_MAX_E_MV = -60.0
"""Synapses of other mechanisms with reversal potential at or below this are inhibitory."""

TRAINED_WEIGHT = 1.0
"""NetCon weight of every training synapse."""

TRAINED_MECHANISM_KINDS = {mechanism: kind for kind, mechanism in SYNAPSE_MECHANISMS.items()}
"""Kind ("exc"/"inh") of each point process the training data used."""

_WEIGHT_TOLERANCE = 1e-9

DRIVE_MODEL_HINT = ("Drive models (input_kind 'drive', trained on `simulate --config data/mixture.yaml` data) "
                    "take any weight, ExpSyn/Exp2Syn kinetics and somatic IClamps.")

INPUT_KINDS = ("events", "drive")
"""Model input kinds: binary events (checkpoints without ``input_kind``) or the conductance drive."""

DRIVE_CLAMP = "IClamp"
"""The one point process a drive model takes, on the soma: its current is the soma-current channel."""

MAX_EVENT_PEAK_CONDUCTANCE_US = {"ampa": 0.05, "nmda": 0.005, "gaba": 0.05}
"""Largest peak conductance (uS) one event of one synapse may add per receptor on a drive model:
``weight * gmax`` (``AMPANMDA``/``GABAA``) or ``weight`` (``ExpSyn``/``Exp2Syn``). The training data
(``mixture`` regime) reached 0.02 uS (ExpSyn/Exp2Syn, ampa or gaba) and about 0.002 uS nmda
(``AMPANMDA`` at up to ~5 times its default weight); these limits leave 2.5 times that."""

TRAINED_EVENT_PEAK_CONDUCTANCE_US = {"ampa": 0.02, "nmda": 0.002, "gaba": 0.02}
"""About the largest peak conductance (uS) per event and receptor in the drive training data."""

TRAINED_MG_MM = 1.0
"""The Mg2+ concentration (mM) of every ``AMPANMDA`` synapse of the drive training data."""

_RISE_DECAY_NAMES = {"AMPANMDA": "tau_r_ampa < tau_d_ampa and tau_r_nmda < tau_d_nmda",
                     "GABAA": "tau_r < tau_d", "ExpSyn": "tau > 0", "Exp2Syn": "tau1 < tau2"}


class UnsupportedFeatureError(NotImplementedError):
    """An LFPy feature that a surrogate model cannot reproduce."""


class SynapseMappingError(ValueError):
    """A synapse attached to the cell has no counterpart among the model's input channels."""


# --------------------------------------------------------------------------- input events


# Binned sparsely by :class:`surrogate_cell.input_events.InputEvents` (memory grows with the
# number of events, never with tstop).

HISTORY_RANGE_MV = (-150.0, 100.0)
"""Membrane voltages a start history may hold (mV); anything outside is not a voltage in mV."""


# --------------------------------------------------------------------------- the cell


class SurrogateCell(LFPy.Cell):
    """An ``LFPy.Cell`` simulated by a trained surrogate model instead of NEURON.

    The geometry is built by the model's own cell recipe (e.g. :func:`~surrogate_cell.cells.l5pc`),
    so everything geometric (``set_pos``, ``set_rotation``, ``get_idx``, probes) is LFPy's own
    code; only :meth:`simulate` differs. As in LFPy, creating a cell deletes all existing
    NEURON sections: one cell per process at a time. NEURON itself is never run by
    :meth:`simulate`.

    Parameters
    ----------
    model : str or os.PathLike
        Checkpoint path (``.pt``) or the name of a shipped model, e.g. ``"l5pc-default"``
        (:func:`surrogate_cell.pretrained.available_models`).
    device : str or torch.device, optional
        Where the model runs; default CUDA if available, else CPU.
    dtype : str or torch.dtype, optional
        Model precision; default float32 (float16/bfloat16 on CUDA only).
    history_mv : ndarray, optional
        Default start state of :meth:`simulate`: segment voltages (mV), shape
        (totnsegs, >= window), window = the model's window in 1 ms samples (100 for the
        shipped models); the last ``window`` columns are used. Default: every segment at
        ``v_init``.
    history_events : ndarray, optional
        Default start input, shape (n_event_channels, >= window), one column per ms: binary
        events (event models), or drive channels, conductances (nS, >= 0) and the soma current
        (nA) (drive models). Default: no events (no conductance, no current).
    spike_threshold : float, optional
        Somatic spike threshold (mV): output spikes are upward crossings of it by the soma
        voltage. Default: the threshold stored in the checkpoint (chosen from the training
        data), else -25 mV.
    spike_refractory_ms : float, default 2.0
        Minimum interval (ms) between two output spikes.
    stepper : callable, default :func:`~surrogate_cell.engine.make_stepper`
        Builds the stepping engine: ``stepper(model, normalisation, n_cells, device, dtype)``
        returning an object with ``reset`` and ``step``.
    **cell_kwargs
        What ``LFPy.Cell`` / the model's cell builder takes (``tstop`` in ms, ``v_init`` in
        mV, ``dt`` in ms, ``tstart`` in ms (negative: a warm-up, not recorded), ``morphology``,
        ...); missing ones come from the model's cell recipe.

    Raises
    ------
    CheckpointError
        If the built cell is not the one the model was trained on (different segment hash)
        or the checkpoint cannot be read.

    Attributes
    ----------
    spike_times : ndarray
        Somatic spike times (ms) of the last :meth:`simulate`.
    input_kind : {"events", "drive"}
        What the model reads: binary events, or the conductance drive (see the module docstring).
    input_segments : ndarray of int
        Segments with input channels (the trained synapse-carrying dendrites).
    soma_segment : int
        Index of the soma segment.
    window_ms : int
        The model's input window (ms).
    normalisation, model_meta
        The checkpoint's voltage normalisation and metadata (cell recipe, provenance).

    Examples
    --------
    >>> cell = SurrogateCell(model="l5pc-default", tstop=1000.0)  # doctest: +SKIP
    >>> synapse = LFPy.Synapse(cell, idx=cell.get_closest_idx(z=800.0), syntype="AMPANMDA",
    ...                        weight=1.0)  # doctest: +SKIP
    >>> synapse.set_spike_times(np.array([100.0, 250.0]))  # doctest: +SKIP
    >>> cell.simulate(rec_vmem=True, rec_imem=True)  # doctest: +SKIP
    """

    def __init__(self, model: str | os.PathLike, *, device: str | torch.device | None = None,
                 dtype: str | torch.dtype | None = None, history_mv: np.ndarray | None = None,
                 history_events: np.ndarray | None = None,
                 spike_threshold: float | None = None,
                 spike_refractory_ms: float = REFRACTORY_MS,
                 stepper: Callable = make_stepper, **cell_kwargs):
        self.model_path = resolve_model(model)
        self.device = select_device(device)
        self.dtype = select_dtype(dtype, self.device)
        network, self.normalisation, self.model_meta, _ = load_checkpoint(self.model_path)
        recipe = self.model_meta["cell"]["recipe"]
        _check_cell_kwargs(cell_kwargs, recipe)
        try:
            built = build_stored_cell(recipe, cell_kwargs)
        except CellRecipeError as error:
            raise CheckpointError(f"{self.model_path}: {error}") from None
        self._adopt(built)
        self._take_channel_layout(network.config)
        self.history_mv, self.history_events = history_mv, history_events
        if spike_threshold is None:
            spike_threshold = self.model_meta["cell"].get("spike_threshold_mv", SPIKE_THRESHOLD_MV)
        self.spike_threshold, self.spike_refractory_ms = spike_threshold, spike_refractory_ms
        self.spike_times = np.empty(0)
        self._stepper = stepper(network, self.normalisation, 1, self.device, self.dtype)
        self._vmem_to_imem: np.ndarray | None = None
        self._mechanism_parameters: dict[str, dict] = {}
        self._sptimeslist: list[np.ndarray] = []
        self._hoc_netstimlist = _NetStimList()
        self._current_clamps: list[dict[str, float]] = []  # the IClamps of a drive model, as set

    def _adopt(self, built: LFPy.Cell) -> None:
        """Take over the complete state of a freshly built ``LFPy.Cell``.

        The recipe's builder returns a finished ``LFPy.Cell``; taking over its attributes
        (and leaving the original empty, so its finaliser releases nothing of ours) makes this
        object that very cell, so all of LFPy's methods work on it unchanged.
        """
        self.__dict__.update(built.__dict__)
        built.__dict__.clear()

    def _take_channel_layout(self, config) -> None:
        """Check that the model fits this cell and keep its input-channel layout."""
        check_cell(self.model_meta, cell_layout(self, ()).segment_hash, self.model_path)
        cell_meta = self.model_meta["cell"]
        self.input_kind = str(cell_meta.get("input_kind", "events"))
        if self.input_kind not in INPUT_KINDS:
            raise CheckpointError(f"{self.model_path}: its cell.input_kind is {self.input_kind!r}; this version "
                                  f"knows {list(INPUT_KINDS)}.")
        self.input_segments = np.asarray(cell_meta["input_segments"], dtype=np.int64)
        self.soma_segment = int(cell_meta["soma_segment"])
        self.window_ms = int(config.window)
        if self.input_kind == "drive":
            _check_drive_layout(config, self.totnsegs, self.model_path)
        else:
            _check_channel_layout(config, self.input_segments.size, self.totnsegs, self.model_path)
        # segments a drive model takes synapses on: the soma and the trained synapse-carrying ones
        self._drive_segments = np.zeros(self.totnsegs, dtype=bool)
        self._drive_segments[np.union1d([self.soma_segment], self.input_segments)] = True
        self._input_row_of_segment = np.full(self.totnsegs, -1, dtype=np.int64)
        self._input_row_of_segment[self.input_segments] = np.arange(self.input_segments.size)

    # ------------------------------------------------------------------ channels

    @property
    def is_drive_model(self) -> bool:
        """Whether the model reads the conductance drive (``input_kind == "drive"``)."""
        return self.input_kind == "drive"

    @property
    def n_event_channels(self) -> int:
        """Number of model input channels (int): excitatory event channels, then inhibitory ones
        (event models); ``3 * totnsegs + 1`` drive channels (drive models:
        :func:`~surrogate_cell.synapses.drive_channels`)."""
        if self.is_drive_model:
            return drive_channel_count(self.totnsegs)
        return 2 * self.input_segments.size

    def event_channel(self, idx: int | np.ndarray, kind: str) -> np.ndarray:
        """Input channel(s) of segment(s) ``idx`` for synapses of one kind.

        Parameters
        ----------
        idx : int or array_like of int
            Segment index or indices.
        kind : {"exc", "inh"}
            Excitatory (AMPA+NMDA) or inhibitory (GABA_A) channel.

        Returns
        -------
        ndarray of int
            The channel of every segment, -1 where the segment has no input channel.
        """
        if kind not in EVENT_KINDS:
            raise ValueError(f"kind must be one of {EVENT_KINDS}, got {kind!r}")
        self._refuse_drive("event_channel", "its channels are receptor r of segment s at r * totnsegs + s "
                           "(surrogate_cell.synapses.drive_channels)")
        rows = self._input_row_of_segment[np.asarray(idx, dtype=np.int64)]
        offset = EVENT_KINDS.index(kind) * self.input_segments.size
        return np.where(rows >= 0, rows + offset, -1)

    def input_events(self, spike_times: list[np.ndarray] | None = None) -> InputEvents:
        """The model input of the attached synapses, as a sparse list of events.

        Parameters
        ----------
        spike_times : list of ndarray, optional
            The trains of the synapses (default: :meth:`input_spike_times`).

        Returns
        -------
        InputEvents
            Binary events of shape (n_event_channels, n_model_steps), in memory proportional to
            their number (``toarray()`` makes them dense): step ``k`` holds the events of
            ``[t0 + k, t0 + k + 1)`` ms, with ``t0`` the whole ms at or before ``tstart``;
            channels are the excitatory ones of ``input_segments`` followed by the inhibitory ones.

        Raises
        ------
        SynapseMappingError
            For synapses the model cannot represent (see the module docstring for the rules).
        UnsupportedFeatureError
            On a drive model (use :meth:`model_input`).
        """
        self._refuse_drive("input_events", "its input is conductances and current; use model_input()")
        t_begin, n_steps = self._model_steps()
        synapses = list(self.synapses)
        channels = np.array([self._input_channel(s.idx, s.syntype, s.kwargs, f"Synapse {number}")
                             for number, s in enumerate(synapses)], dtype=np.int64)
        self._warn_about_stand_in_synapses(synapses)
        spike_times = self.input_spike_times() if spike_times is None else spike_times
        return InputEvents.from_spike_times(spike_times, channels, self.n_event_channels, n_steps, t_begin)

    def model_input(self, spike_times: list[np.ndarray] | None = None) -> np.ndarray:
        """The whole model input of the attached synapses (and current clamps), dense; for short runs.

        :meth:`simulate` feeds the model exactly this, computed block by block.

        Parameters
        ----------
        spike_times : list of ndarray, optional
            The trains of the synapses (default: :meth:`input_spike_times`).

        Returns
        -------
        ndarray, shape (n_event_channels, n_model_steps)
            Column ``k`` is the input of the model step ``[t0 + k, t0 + k + 1)`` ms (``t0`` the
            whole ms at or before ``tstart``): uint8 binary events (event models,
            ``input_events().toarray()``), or float32 drive channels (drive models): receptor
            ``r`` of segment ``s`` in row ``r * totnsegs + s`` (mean conductance, nS), the mean
            soma current (nA) in the last row.

        Raises
        ------
        SynapseMappingError, UnsupportedFeatureError
            For synapses or clamps the model cannot represent.
        """
        source = self._input_source(self.input_spike_times() if spike_times is None else spike_times)
        return source.block(0, source.n_steps).T

    def _input_source(self, trains: list[np.ndarray]) -> InputEvents | _DriveInput:
        """What :meth:`_free_run` reads block by block: events, or the drive of synapses and clamps."""
        if not self.is_drive_model:
            return self.input_events(trains)
        t_begin, n_steps = self._model_steps()
        synapses = list(self.synapses)
        described = [self._drive_synapse(s.idx, s.syntype, s.kwargs, f"Synapse {number}")
                     for number, s in enumerate(synapses)]
        drive_synapses = DriveSynapses.from_kinetics([d[0] for d in described], [d[1] for d in described],
                                                     [d[2] for d in described])
        counts = np.fromiter(map(np.size, trains), dtype=np.int64, count=len(trains))
        times = np.concatenate([np.ravel(t) for t in trains]) if trains else np.empty(0)
        which = np.repeat(np.arange(len(trains)), counts)
        clamps = self._current_clamps
        pulses = tuple(np.array([c[name] for c in clamps], dtype=float) for name in ("delay", "dur", "amp"))
        return _DriveInput(ConductanceDrive(drive_synapses, self.totnsegs), np.asarray(times, float) - t_begin,
                           which, pulses[0] - t_begin, pulses[1], pulses[2], n_steps)

    def set_synapse(self, idx, syntype, record_current=False, record_potential=False, weight=None,
                    **kwargs) -> int:
        """Register a synapse (called by ``LFPy.Synapse``) without creating NEURON objects.

        The surrogate needs no NEURON synapse, and none means no NetCon left pointing at deleted
        sections when the next cell is built.

        Parameters
        ----------
        idx : int
            Segment index; it must have an input channel (drive models: any segment but the axon).
        syntype : str
            Event models: ``"AMPANMDA"`` (excitatory) or ``"GABAA"`` (inhibitory) with their
            trained parameters, or any mechanism whose reversal potential ``e`` (mV) is
            >= -40 (excitatory) or <= -60 (inhibitory), which then stands in for the trained
            synapse of that kind (with a :class:`SynapseMappingWarning`). Drive models:
            ``"AMPANMDA"``, ``"GABAA"``, ``"ExpSyn"`` or ``"Exp2Syn"`` with their own parameters
            (see the module docstring).
        record_current : bool
            Record the synaptic current ``i = g (v - e)`` (nA), from the synapse's own kinetics
            (``AMPANMDA``, ``GABAA``, ``ExpSyn``, ``Exp2Syn``) and the predicted segment voltage
            (filled by :meth:`simulate` as ``synapse.i``).
        record_potential : bool
            Record the segment voltage at the synapse (filled by :meth:`simulate`).
        weight : float
            Event models: must be the trained 1.0 (one activation of the trained synapse).
            Drive models: any finite weight >= 0 within :data:`MAX_EVENT_PEAK_CONDUCTANCE_US`.
        **kwargs
            Mechanism parameters, e.g. ``e`` (mV).

        Returns
        -------
        int
            The synapse's number (as LFPy's ``set_synapse``).

        Raises
        ------
        SynapseMappingError
            For a synapse the model cannot represent, at the user's ``LFPy.Synapse(...)`` line.
        UnsupportedFeatureError
            For ``record_current=True`` on a mechanism whose kinetics are not known here.
        """
        label = f"Synapse {len(self.synapses)}"
        if self.is_drive_model:
            self._drive_synapse(idx, syntype, {**kwargs, "weight": weight}, label)
        else:
            self._input_channel(idx, syntype, {**kwargs, "weight": weight}, label)
        if record_current:
            self._kinetics(syntype, kwargs, label)
        self._sptimeslist.append(np.empty(0))
        self._hoc_netstimlist.append(_silent_netstim())
        return len(self._sptimeslist) - 1

    def set_point_process(self, idx, pptype, record_current=False, record_potential=False, **kwargs) -> int:
        """Register a current clamp (called by ``LFPy.StimIntElectrode``) without creating NEURON objects.

        Only drive models take one: an ``IClamp`` on the soma segment, whose pulse (``amp`` nA
        from ``delay`` for ``dur`` ms) enters the model's soma-current channel; several add up.
        ``record_current`` fills ``stimulus.i`` (nA, the clamp's current as NEURON records it) and
        ``record_potential`` ``stimulus.v`` (mV, the soma voltage) in :meth:`simulate`.

        Returns
        -------
        int
            The clamp's number (LFPy's ``hocidx``).

        Raises
        ------
        UnsupportedFeatureError
            On an event model (never trained with injected current), for any other ``pptype``
            (SEClamp, VClamp, ...) or an ``IClamp`` off the soma.
        ValueError
            For an unknown ``IClamp`` parameter, a non-finite or non-scalar value or ``dur < 0``.
        """
        label = f"Point process {len(self._current_clamps)}"
        if not self.is_drive_model:
            raise _unsupported(f"current/voltage clamps (LFPy.StimIntElectrode, pptype {pptype})",
                               f"the model was not trained with injected currents ({DRIVE_MODEL_HINT})")
        if pptype != DRIVE_CLAMP:
            raise _unsupported(
                f"LFPy.StimIntElectrode with pptype={pptype!r} ({label})",
                f"a drive model takes injected current only as pptype={DRIVE_CLAMP!r} on the soma "
                f"(idx=cell.soma_segment = {self.soma_segment}); use that, or voltage/other clamps on the NEURON "
                "cell")
        segment = _one_segment(idx, label)
        if segment != self.soma_segment:
            raise _unsupported(
                f"an IClamp on segment {segment} ({self._section_type(segment)}) ({label})",
                f"a drive model was trained with current injected into the soma only; give "
                f"idx=cell.soma_segment (= {self.soma_segment})")
        defaults = self._mechanism_defaults(DRIVE_CLAMP, label)
        settings = {name: float(defaults[name]) for name in ("delay", "dur", "amp")}
        for name, value in kwargs.items():
            if name not in settings:
                raise ValueError(f"{label} (IClamp) has no parameter {name!r}; an IClamp takes "
                                 f"{sorted(settings)} (delay and dur in ms, amp in nA).")
            if np.ndim(value) != 0 or not np.isfinite(float(value)):
                raise ValueError(f"{label} (IClamp) has {name} = {value!r}; give one finite number "
                                 "(several pulses: several StimIntElectrodes).")
            settings[name] = float(value)
        if settings["dur"] < 0:
            raise ValueError(f"{label} (IClamp) has dur = {settings['dur']:g} ms; give dur >= 0.")
        self._current_clamps.append(settings)
        return len(self._current_clamps) - 1

    def _section_type(self, segment: int) -> str:
        return str(np.asarray(self.section_types)[segment]) if 0 <= segment < self.totnsegs else "no such segment"

    def _drive_synapse(self, idx, syntype: str, kwargs: dict, label: str) -> tuple[int, SynapseKinetics, float]:
        """(segment, kinetics, weight) of a synapse on a drive model; raises :class:`SynapseMappingError`
        for anything the model cannot take (the rules of the module docstring)."""
        segment = _one_segment(idx, label)
        if syntype not in DRIVE_MECHANISMS:
            raise SynapseMappingError(
                f"{label} is a {syntype}; a drive model knows the conductances of "
                f"{', '.join(DRIVE_MECHANISMS)} only. Use one of these (ExpSyn/Exp2Syn with their own time "
                "constants, weight and e stand in for most synapse models).")
        if not (0 <= segment < self.totnsegs and self._drive_segments[segment]):
            raise SynapseMappingError(
                f"{label} ({syntype}) sits on segment {segment} ({self._section_type(segment)}), which has no "
                f"model input: a drive model was trained with synapses on the soma and "
                f"{', '.join(self._input_section_types())} segments (every segment but the axon). Choose idx "
                "with e.g. cell.get_closest_idx(..., section='dend'), section='apic' or section='soma'.")
        weight = kwargs.get("weight")
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            weight = float("nan")
        if not np.isfinite(weight):
            raise SynapseMappingError(f"{label} ({syntype} on segment {segment}) has weight "
                                      f"{kwargs.get('weight')!r}; give a finite weight >= 0 (uS for ExpSyn/Exp2Syn, "
                                      "a multiple of gmax for AMPANMDA/GABAA).")
        if weight < 0:
            raise SynapseMappingError(
                f"{label} ({syntype} on segment {segment}) has weight {weight:g} < 0; conductances cannot be "
                f"negative. Give weight >= 0; for inhibition use GABAA or an ExpSyn/Exp2Syn with e in "
                f"[{INHIBITORY_REVERSAL_MV[0]:g}, {INHIBITORY_REVERSAL_MV[1]:g}] mV.")
        defaults = self._mechanism_defaults(syntype, label)
        parameters = {**defaults, **{k: float(v) for k, v in kwargs.items() if k in defaults}}
        if syntype == "AMPANMDA" and not np.isclose(parameters["mg"], TRAINED_MG_MM):
            raise SynapseMappingError(
                f"{label} (AMPANMDA on segment {segment}) sets mg = {parameters['mg']:g} mM; a drive model "
                f"learned the NMDA Mg2+ block at mg = {TRAINED_MG_MM:g} mM only (its input is the unblocked "
                f"NMDA conductance). Remove mg (or set mg={TRAINED_MG_MM:g}).")
        kinetics = synapse_kinetics(syntype, parameters)
        for part in kinetics.parts:
            rise, decay = part.tau_rise_ms, part.tau_decay_ms
            dual = syntype != "ExpSyn"
            if not (np.isfinite(rise) and np.isfinite(decay) and decay > 0 and (not dual or 0 < rise < decay)):
                raise SynapseMappingError(
                    f"{label} ({syntype} on segment {segment}) has time constants rise {rise:g} ms, decay "
                    f"{decay:g} ms; set {_RISE_DECAY_NAMES[syntype]} (finite, > 0).")
        self._check_drive_reversal(kinetics, segment, label)
        receptors = drive_receptors(kinetics)
        for part, receptor in zip(kinetics.parts, receptors):
            self._check_event_peak(syntype, segment, weight, part.gmax_us, RECEPTORS[receptor], label)
        return segment, kinetics, weight

    @staticmethod
    def _check_drive_reversal(kinetics: SynapseKinetics, segment: int, label: str) -> None:
        """Refuse a reversal potential outside the range of the synapse's receptor(s)."""
        e, syntype = kinetics.e_mv, kinetics.syntype
        excitatory = EXCITATORY_REVERSAL_MV[0] <= e <= EXCITATORY_REVERSAL_MV[1]
        inhibitory = INHIBITORY_REVERSAL_MV[0] <= e <= INHIBITORY_REVERSAL_MV[1]
        exc_range = f"[{EXCITATORY_REVERSAL_MV[0]:g}, {EXCITATORY_REVERSAL_MV[1]:g}] mV"
        inh_range = f"[{INHIBITORY_REVERSAL_MV[0]:g}, {INHIBITORY_REVERSAL_MV[1]:g}] mV"
        needed = {"AMPANMDA": (excitatory, f"in the excitatory range {exc_range}"),
                  "GABAA": (inhibitory, f"in the inhibitory range {inh_range}")}.get(
            syntype, (excitatory or inhibitory, f"in {exc_range} (excitatory, ampa) or {inh_range} "
                                                "(inhibitory, gaba)"))
        if not needed[0]:
            raise SynapseMappingError(
                f"{label} ({syntype} on segment {segment}) has reversal potential e = {e:g} mV; a drive model "
                f"takes {syntype} synapses with e {needed[1]}, the reversal potentials it was trained with. "
                "Set e within that range.")

    @staticmethod
    def _check_event_peak(syntype: str, segment: int, weight: float, gmax_us: float, receptor: str,
                          label: str) -> None:
        """Refuse a synapse whose single event adds more peak conductance than a drive model accepts."""
        peak, limit = weight * gmax_us, MAX_EVENT_PEAK_CONDUCTANCE_US[receptor]
        if not np.isfinite(peak) or gmax_us < 0:
            raise SynapseMappingError(f"{label} ({syntype} on segment {segment}) has gmax {gmax_us!r} uS; give "
                                      "a finite gmax >= 0.")
        if peak > limit * (1 + 1e-9):
            what = "weight" if syntype in ("ExpSyn", "Exp2Syn") else "weight * gmax"
            raise SynapseMappingError(
                f"{label} ({syntype} on segment {segment}, weight {weight:g}): one event adds a peak {receptor} "
                f"conductance ({what}) of {peak:.4g} uS, more than the {limit:g} uS per event a drive model "
                f"accepts (its training data reached about {TRAINED_EVENT_PEAK_CONDUCTANCE_US[receptor]:g} uS). "
                f"Use weight <= {limit / gmax_us:.4g} here; for a stronger input attach more synapses "
                "(e.g. on neighbouring segments) or give them more events.")

    def _input_channel(self, idx: int, syntype: str, kwargs: dict, label: str) -> int:
        """Input channel of a synapse; raises :class:`SynapseMappingError` for anything the model never saw."""
        idx = _one_segment(idx, label)
        kind = self._synapse_kind(syntype, kwargs, label)
        weight = kwargs.get("weight")
        if weight is None or abs(float(weight) - TRAINED_WEIGHT) > _WEIGHT_TOLERANCE:
            raise SynapseMappingError(
                f"{label} ({syntype} on segment {idx}) has weight {weight}; the model was trained "
                f"with weight {TRAINED_WEIGHT:g} only. For a stronger input attach several "
                f"synapses to nearby segments. {DRIVE_MODEL_HINT}"
            )
        channel = int(self.event_channel(idx, kind))
        if channel < 0:
            raise SynapseMappingError(
                f"{label} ({syntype}) sits on segment {idx} ({self.section_types[idx]}), which has "
                f"no model input: the model was trained with synapses on "
                f"{', '.join(self._input_section_types())} segments only. Choose idx with e.g. "
                "cell.get_closest_idx(..., section='dend') or section='apic'."
            )
        return channel

    def _input_section_types(self) -> list[str]:
        return sorted(set(np.asarray(self.section_types)[self.input_segments].tolist()))

    def _synapse_kind(self, syntype: str, kwargs: dict, label: str) -> str:
        """"exc" or "inh": by name for the trained mechanisms, else by reversal potential."""
        defaults = self._mechanism_defaults(syntype, label)
        if syntype in TRAINED_MECHANISM_KINDS:
            _check_trained_parameters(syntype, kwargs, defaults, label)
            return TRAINED_MECHANISM_KINDS[syntype]
        reversal = kwargs.get("e", defaults.get("e"))
        if reversal is None:
            raise SynapseMappingError(
                f"{label} ({syntype}) has no reversal potential 'e', so it cannot be told "
                f"excitatory or inhibitory; use {' or '.join(TRAINED_MECHANISM_KINDS)}."
            )
        if reversal >= EXCITATORY_MIN_E_MV:
            return "exc"
        if reversal <= INHIBITORY_MAX_E_MV:
            return "inh"
        raise SynapseMappingError(
            f"{label} ({syntype}, e = {reversal:g} mV) is neither excitatory "
            f"(e >= {EXCITATORY_MIN_E_MV:g} mV) nor inhibitory (e <= {INHIBITORY_MAX_E_MV:g} mV); "
            f"the model knows only {', '.join(f'{m} ({k})' for m, k in TRAINED_MECHANISM_KINDS.items())}."
        )

    def _mechanism_defaults(self, mechanism: str, label: str) -> dict[str, float]:
        """Default parameter values of a NEURON point process, read once from a throw-away instance."""
        if mechanism not in self._mechanism_parameters:
            from neuron import h

            section = next(iter(self.allseclist))
            try:
                point_process = getattr(h, mechanism)(section(0.5))
            except Exception as error:  # NEURON raises bare exceptions of several kinds
                raise SynapseMappingError(f"{label}: {mechanism!r} is not a NEURON point process "
                                          f"({error}).") from None
            attributes = {name: getattr(point_process, name) for name in dir(point_process)
                          if not name.startswith("_")}
            self._mechanism_parameters[mechanism] = {
                name: value for name, value in attributes.items() if isinstance(value, float)}
        return self._mechanism_parameters[mechanism]

    def _warn_about_stand_in_synapses(self, synapses: list) -> None:
        foreign = sorted({s.syntype for s in synapses} - set(TRAINED_MECHANISM_KINDS))
        if foreign:
            warnings.warn(
                f"Synapses of type {', '.join(foreign)} are simulated as the trained "
                f"{' / '.join(TRAINED_MECHANISM_KINDS)} synapse of the same kind (by reversal "
                "potential); their own kinetics and conductance are not modelled.",
                SynapseMappingWarning, stacklevel=3,
            )

    def input_spike_times(self) -> list[np.ndarray]:
        """The spike times (ms) that drive each attached synapse, as NEURON would deliver them.

        Returns
        -------
        list of ndarray
            One array per synapse: its ``set_spike_times`` times together with those of its
            NetStim (``set_spike_times_w_netstim``, generated by NEURON's own NetStim, see
            :mod:`surrogate_cell.netstim`, and delivered after the NetCon's default 1 ms delay,
            as in LFPy), sorted.

        Raises
        ------
        SynapseMappingError
            For spike times before ``tstart`` or not finite.
        """
        synapses = list(self.synapses)
        driven = [number for number, s in enumerate(synapses) if self._hoc_netstimlist[s._ns_index].number > 0]
        generated = dict(zip(driven, netstim_spike_times(
            [NetStimSettings.of(self._hoc_netstimlist[synapses[n]._ns_index]) for n in driven],
            float(self.tstart), float(self.tstop))))
        # LFPy connects each NetStim with a NetCon of NEURON's default delay
        generated = {number: times + NETCON_DELAY_MS for number, times in generated.items()}
        trains = []
        for number, synapse in enumerate(synapses):
            given = np.asarray(self._sptimeslist[synapse._ns_index], dtype=float).ravel()
            times = np.sort(np.concatenate([given, generated.get(number, np.empty(0))]))
            if not np.isfinite(times).all():
                raise SynapseMappingError(
                    f"Synapse {number} has spike times that are NaN or infinite ({times[~np.isfinite(times)][:3]} "
                    "...); give finite times in ms (drop a spike rather than setting it to inf).")
            early = times < self.tstart
            if early.any():
                raise SynapseMappingError(
                    f"Synapse {number} has spike times before tstart = {self.tstart} ms ({times[early][:3]} ...); "
                    "the simulation starts at tstart. Set an earlier tstart (a warm-up) or drop those spikes.")
            trains.append(times)
        return trains

    # ------------------------------------------------------------------ simulation

    def simulate(self, probes=None, rec_imem=False, rec_vmem=False, rec_ipas=False, rec_icap=False,
                 rec_variables=(), variable_dt=False, atol=0.001, rtol=0.0, to_memory=True,
                 to_file=False, file_name=None, history_mv=None, history_events=None, **kwargs):
        """Run the surrogate and fill ``tvec``, ``somav``, ``spike_times`` (and ``vmem``, ``imem``, probes).

        Same arguments and results as ``LFPy.Cell.simulate``, on the cell's ``dt`` grid. The
        model runs free from ``tstart`` (each 1 ms step reads its own earlier outputs, from the
        start state on); values between two model steps are linearly interpolated.

        Parameters
        ----------
        probes : list of LFPy probes, optional
            E.g. ``LFPy.RecExtElectrode``, ``LFPy.CurrentDipoleMoment``; each probe's ``data``
            becomes ``probe.get_transformation_matrix() @ imem`` (mV for electrodes,
            nA µm for dipole moments), shape (n_contacts, len(tvec)).
        rec_imem : bool
            Keep ``imem`` (nA), shape (totnsegs, len(tvec)): LFPy's vmem -> imem matrix times
            ``vmem``.
        rec_vmem : bool
            Keep ``vmem`` (mV), shape (totnsegs, len(tvec)).
        rec_ipas, rec_icap, rec_variables, variable_dt
            Must be left at their defaults (the model predicts only segment voltages on a
            1 ms grid).
        atol, rtol, to_memory
            Accepted for compatibility and ignored; data are always kept in memory.
        to_file : bool
            Also write the probe data to ``file_name`` (HDF5, named like LFPy's).
        file_name : str, optional
            Output file for ``to_file``.
        history_mv : ndarray, optional
            Start voltages (mV), shape (totnsegs, >= window); the last ``window`` columns are
            used. Default: the constructor's, else every segment at ``v_init``.
        history_events : ndarray, optional
            Start input, shape (n_event_channels, >= window): binary events (event models) or
            drive channels (drive models). Default: the constructor's, else none (no
            conductance, no current).
        **kwargs
            Any other ``LFPy.Cell.simulate`` keyword raises.

        Returns
        -------
        None
            Results are attributes, as in LFPy: ``tvec`` (ms; ``0, dt, ..., tstop``),
            ``somav`` (mV), ``spike_times`` (ms), ``vmem``/``imem`` if requested, and the
            probes' ``data``.

        Raises
        ------
        UnsupportedFeatureError
            For features a surrogate cannot provide.
        SynapseMappingError
            For synapses the model cannot represent.
        """
        self._refuse_unsupported(rec_ipas, rec_icap, rec_variables, variable_dt, kwargs)
        trains = self.input_spike_times()
        events = self._input_source(trains)  # events, or the drive computed block by block
        history = self._start_history(history_mv, history_events)
        model_vmem = self._free_run(events, *history)  # at t_begin, t_begin + 1, ... (whole ms)
        t_begin, _ = self._model_steps()
        self.tvec = self.output_times()
        on_tvec = partial(_interpolated, t_begin=t_begin, times=self.tvec)
        # imem (segments x steps) only when it is recorded or feeds probes
        model_imem = self.get_vmem_to_imem_matrix() @ model_vmem if rec_imem or probes else None
        self.somav = on_tvec(model_vmem[self.soma_segment])
        spikes = upward_crossing_times(model_vmem[self.soma_segment], MODEL_STEP_MS, self.spike_threshold,
                                       self.spike_refractory_ms, t_begin)
        self.spike_times = spikes[(spikes >= 0) & (spikes <= self.tstop)]
        if rec_vmem:
            self.vmem = on_tvec(model_vmem)
        if rec_imem:
            self.imem = on_tvec(model_imem)
        _fill_probes(probes or [], model_imem, self.totnsegs, on_tvec)
        if to_file and probes:
            _write_probe_file(probes, file_name)
        self._collect_synapse_recordings(trains, lambda segment: on_tvec(model_vmem[segment]))
        self._collect_clamp_recordings(lambda segment: on_tvec(model_vmem[segment]))

    def output_times(self) -> np.ndarray:
        """LFPy's ``tvec``: ``0, dt, ..., tstop`` (ms), the grid every recording comes on."""
        return np.arange(int(round(self.tstop / self.dt)) + 1) * self.dt

    def get_vmem_to_imem_matrix(self) -> np.ndarray:
        """LFPy's ``get_transformation_matrix_vmem_to_imem()``, computed once (it depends on no position).

        Returns
        -------
        ndarray, shape (totnsegs, totnsegs)
            Maps segment voltages (mV) to membrane currents (nA).
        """
        if self._vmem_to_imem is None:
            self._vmem_to_imem = self.get_transformation_matrix_vmem_to_imem()
        return self._vmem_to_imem

    def resting_history(self) -> tuple[np.ndarray, np.ndarray]:
        """The default start: every segment at ``v_init`` for one window, no input.

        Returns
        -------
        voltages : ndarray, shape (totnsegs, window)
            ``v_init`` (mV) everywhere.
        events : ndarray, shape (n_event_channels, window)
            Zeros: no events (uint8, event models), no conductance and no current (float32,
            drive models).
        """
        dtype = np.float32 if self.is_drive_model else np.uint8
        return (np.full((self.totnsegs, self.window_ms), float(self.v_init)),
                np.zeros((self.n_event_channels, self.window_ms), dtype=dtype))

    def _start_history(self, history_mv, history_events) -> tuple[np.ndarray, np.ndarray]:
        """The history to start from: simulate()'s arguments, else the constructor's, else rest."""
        voltages, events = self.resting_history()
        given_mv = _first_given(history_mv, self.history_mv)
        given_events = _first_given(history_events, self.history_events)
        if given_mv is not None:
            voltages = self._last_window(given_mv, "history_mv", self.totnsegs)
        if given_events is not None:
            events = self._last_window(given_events, "history_events", self.n_event_channels)
        return voltages, events

    def _last_window(self, array, name: str, n_rows: int) -> np.ndarray:
        """The last ``window`` columns of a start history, checked (shape, finite, voltage range or binary)."""
        array = np.asarray(array, dtype=float)
        if array.ndim != 2 or array.shape[0] != n_rows or array.shape[1] < self.window_ms:
            raise ValueError(f"{name} must have shape ({n_rows}, >= {self.window_ms}) (rows by ms, "
                             f"the last column at t = 0), got {array.shape}.")
        if not np.isfinite(array).all():
            raise ValueError(f"{name} contains NaN or infinite values.")
        if name == "history_mv":
            _check_voltage_range(array, name)
        elif self.is_drive_model:
            if array[:-1].min(initial=0.0) < 0:
                raise ValueError(f"{name} of a drive model holds negative conductances (rows 0 .. "
                                 f"{n_rows - 2}, nS); give the drive channels of surrogate_cell.synapses."
                                 "drive_channels (conductances >= 0, the soma current in the last row).")
        elif not np.isin(array, (0.0, 1.0)).all():
            raise ValueError(f"{name} must hold binary events (0 or 1 per channel and ms), as the model was "
                             f"trained on; it holds {np.unique(array[~np.isin(array, (0.0, 1.0))])[:3]} ...")
        return array[:, -self.window_ms:]

    @torch.no_grad()
    def _free_run(self, events: InputEvents | _DriveInput | np.ndarray, history_mv: np.ndarray,
                  history_events: np.ndarray) -> np.ndarray:
        """Step the model through ``events`` (E, T; sparse events, the drive of synapses and clamps,
        or dense for short runs): voltages (totnsegs, T + 1) mV from t = 0. The input is made dense
        one chunk at a time, and the voltages are written once into the result (no further copies
        of segments x steps)."""
        if isinstance(events, np.ndarray):
            events = _DenseInput(events) if self.is_drive_model else InputEvents.from_dense(events)
        as_tensor = partial(torch.as_tensor, dtype=self.dtype, device=self.device)
        run = free_run(self._stepper, lambda start, stop: torch.from_numpy(events.block(start, stop))[None],
                       as_tensor(history_mv.T[None]), as_tensor(history_events.T[None]), n_steps=events.n_steps)
        voltages = np.empty((history_mv.shape[0], events.n_steps + 1))
        voltages[:, 0] = history_mv[:, -1]
        voltages[:, 1:] = run.voltages_mv[0].cpu().numpy().T  # cast to float64 in place
        return voltages

    def _kinetics(self, syntype: str, kwargs: dict, label: str) -> SynapseKinetics:
        """The kinetics of a synapse: its mechanism's defaults, overridden by its parameters."""
        defaults = self._mechanism_defaults(syntype, label)
        try:
            return synapse_kinetics(syntype, {**defaults, **{k: v for k, v in kwargs.items() if k in defaults}})
        except KeyError:
            raise _unsupported(f"record_current=True on {syntype} ({label})",
                               "synaptic currents are computed for AMPANMDA, GABAA, ExpSyn and Exp2Syn "
                               "only") from None

    def _collect_synapse_recordings(self, trains: list[np.ndarray], segment_voltage: Callable) -> None:
        """``synapse.v`` (mV) and ``synapse.i`` (nA) on ``tvec`` for synapses created with
        ``record_potential`` / ``record_current``, as LFPy sets them."""
        for number, synapse in enumerate(self.synapses):
            if not (synapse.record_potential or synapse.record_current):
                continue
            v = segment_voltage(_one_segment(synapse.idx, f"Synapse {number}"))
            if synapse.record_potential:
                synapse.v = v
            if synapse.record_current:
                kinetics = self._kinetics(synapse.syntype, synapse.kwargs, f"Synapse {number}")
                weight = float(synapse.kwargs.get("weight", TRAINED_WEIGHT))
                synapse.i = as_recorded_by_neuron(synaptic_current_na(kinetics, trains[number], weight, self.tvec, v))

    def _collect_clamp_recordings(self, segment_voltage: Callable) -> None:
        """``stimulus.i`` (nA; the IClamp's current as NEURON records it) and ``stimulus.v`` (mV) on
        ``tvec`` for current clamps created with ``record_current`` / ``record_potential``."""
        for clamp in self.pointprocesses:
            if not (clamp.record_potential or clamp.record_current):
                continue
            if clamp.record_potential:
                clamp.v = segment_voltage(self.soma_segment)
            if clamp.record_current:
                settings = self._current_clamps[clamp.hocidx]
                inside = (self.tvec >= settings["delay"]) & (self.tvec < settings["delay"] + settings["dur"])
                clamp.i = as_recorded_by_neuron(np.where(inside, settings["amp"], 0.0))

    def _refuse_drive(self, feature: str, reason: str) -> None:
        """Raise for an event-model feature called on a drive model."""
        if self.is_drive_model:
            raise _unsupported(f"{feature} on a drive model ({self.model_path})", reason)

    # ------------------------------------------------------------------ time and refusals

    def _model_steps(self) -> tuple[float, int]:
        """(time of the first model step: the whole ms at or before ``tstart``, number of 1 ms steps)."""
        if not self.tstop > 0:
            raise ValueError(f"tstop must be positive, got {self.tstop} ms.")
        t_begin = float(np.floor(self.tstart / MODEL_STEP_MS) * MODEL_STEP_MS)
        return t_begin, int(np.ceil((self.tstop - t_begin) / MODEL_STEP_MS - 1e-9))

    def _refuse_unsupported(self, rec_ipas, rec_icap, rec_variables, variable_dt, kwargs) -> None:
        if kwargs:
            raise TypeError(f"SurrogateCell.simulate() got unexpected argument(s) {sorted(kwargs)}.")
        requests = {
            "rec_ipas (passive membrane currents)": rec_ipas,
            "rec_icap (capacitive membrane currents)": rec_icap,
            f"rec_variables={list(rec_variables)} (state variables)": len(rec_variables) > 0,
            "variable_dt (NEURON's variable time step)": variable_dt,
        }
        for feature, requested in requests.items():
            if requested:
                raise _unsupported(feature, "the model predicts only segment voltages on a 1 ms grid")

    def strip_hoc_objects(self) -> None:
        """LFPy's ``strip_hoc_objects``; the synapses' NetStims are kept as their settings, which
        is all :meth:`input_spike_times` reads, so the cell can be pickled (``cellpickler``)."""
        netstims = getattr(self, "_hoc_netstimlist", ())  # absent when the constructor failed
        self._hoc_netstimlist = _NetStimList(NetStimSettings.of(netstim) for netstim in netstims)
        super().strip_hoc_objects()

    def insert_v_ext(self, v_ext, t_ext):
        """Not available: a surrogate cannot take extracellular potentials (raises)."""
        raise _unsupported("insert_v_ext (extracellular potentials)",
                           "the model was not trained with an extracellular field")

    def enable_extracellular_stimulation(self, electrode, t_ext=None, n=1, model="inf"):
        """Not available: a surrogate cannot take extracellular stimulation (raises)."""
        raise _unsupported("enable_extracellular_stimulation (extracellular stimulation)",
                           "the model was not trained with an extracellular field")


# --------------------------------------------------------------------------- helpers


def _silent_netstim():
    """A NEURON NetStim with no spikes, created where LFPy creates one (an artificial cell: no
    section, nothing to integrate); ``set_spike_times_w_netstim`` configures it, and its
    Random123 ids make the generated train the one NEURON would give (:mod:`surrogate_cell.netstim`)."""
    from neuron import h

    netstim = h.NetStim()
    netstim.number = 0
    return netstim


class _NetStimList(list):
    """Stands in for LFPy's hoc List of NetStims: ``count()`` and indexing are all ``LFPy.Synapse`` uses."""

    def count(self) -> int:
        """Number of entries (hoc ``List.count()``; unlike ``list.count`` it takes no argument)."""
        return len(self)


def _check_trained_parameters(mechanism: str, kwargs: dict, trained: dict, label: str) -> None:
    """Refuse parameters of a trained mechanism that differ from the trained (default) values."""
    changed = {name: value for name, value in kwargs.items()
               if name in trained and not np.isclose(float(value), trained[name])}
    if changed:
        raise SynapseMappingError(
            f"{label} sets {changed}, but the model was trained with {mechanism} at "
            f"{ {name: trained[name] for name in changed} }; remove these arguments (the surrogate "
            "reproduces only the trained synapse)."
        )


def _unsupported(feature: str, reason: str) -> UnsupportedFeatureError:
    return UnsupportedFeatureError(
        f"SurrogateCell does not support {feature}: {reason}. Use the NEURON cell (e.g. l5pc()) "
        "for this."
    )


def _first_given(*values):
    return next((value for value in values if value is not None), None)


def _check_voltage_range(voltages: np.ndarray, name: str) -> None:
    """Refuse voltages outside :data:`HISTORY_RANGE_MV` (not membrane voltages in mV)."""
    low, high = HISTORY_RANGE_MV
    if voltages.min() < low or voltages.max() > high:
        raise ValueError(
            f"{name} holds voltages from {voltages.min():.4g} to {voltages.max():.4g} mV, outside the "
            f"physiological range [{low:g}, {high:g}] mV; give membrane voltages in mV (e.g. a NEURON "
            "warm-up's vmem), not volts, currents or another unit.")


def _check_cell_kwargs(cell_kwargs: dict, recipe: dict) -> None:
    """Refuse cell arguments that would change what the model was trained on."""
    trained_celsius = recipe.get("cell_kwargs", {}).get("celsius")
    celsius = cell_kwargs.get("celsius", trained_celsius)
    if trained_celsius is not None and celsius is not None and float(celsius) != float(trained_celsius):
        raise _unsupported(f"celsius={celsius}", f"the model was trained at {trained_celsius} degC")


def _check_drive_layout(config, n_segments: int, path: Path) -> None:
    expected = drive_channel_count(n_segments)
    # SRM configs say whether they read the drive; other families have no such field
    if getattr(config, "drive_input", True) is False or config.event_channels != expected \
            or config.n_tasks - 1 != n_segments:
        raise CheckpointError(
            f"{path}: its cell.input_kind is 'drive', so the model must read drive_input with "
            f"{expected} channels (3 receptors x {n_segments} segments + the soma current) and predict "
            f"{n_segments} voltages; it has drive_input={getattr(config, 'drive_input', None)}, "
            f"{config.event_channels} input channels and {config.n_tasks - 1} voltage outputs. The "
            "checkpoint is inconsistent."
        )


class _DriveInput:
    """A drive model's input, computed block by block while the model steps: the conductances of the
    synapses (exact 1 ms bin means, :class:`~surrogate_cell.synapses.ConductanceDrive`, whose state
    carries from block to block) and the soma current of the IClamps
    (:func:`~surrogate_cell.synapses.bin_mean_current`). Memory grows with the number of events and
    clamps, never with the number of steps.

    Times are ms from the first model step (step ``k`` is the bin ``[k, k + 1)``); events at or
    after ``n_steps`` never act and are dropped.
    """

    def __init__(self, drive: ConductanceDrive, event_times_ms: np.ndarray, event_synapse: np.ndarray,
                 clamp_delay_ms: np.ndarray, clamp_dur_ms: np.ndarray, clamp_amp_na: np.ndarray, n_steps: int):
        keep = event_times_ms < n_steps
        order = np.argsort(event_times_ms[keep], kind="stable")
        self._times = event_times_ms[keep][order]
        self._synapse = np.asarray(event_synapse, dtype=np.int64)[keep][order]
        self._drive = drive
        self._clamps = (clamp_delay_ms, clamp_dur_ms, clamp_amp_na)
        self.n_steps = int(n_steps)
        self.n_channels = drive_channel_count(drive.n_segments)

    @property
    def n_events(self) -> int:
        """Number of synaptic events that act."""
        return int(self._times.size)

    def block(self, start: int, stop: int) -> np.ndarray:
        """Drive channels of steps ``start .. stop - 1``, time first: float32 (stop - start, channels).
        Blocks must follow each other (a block from step 0 starts over)."""
        if start == 0 and self._drive.next_bin != 0:
            self._drive = ConductanceDrive(self._drive.synapses, self._drive.n_segments)
        if stop <= start:
            return np.zeros((0, self.n_channels), dtype=np.float32)
        first, last = np.searchsorted(self._times, [start, stop])
        conductance = self._drive.block(self._times[first:last], self._synapse[first:last], start, stop)
        delay, dur, amp = self._clamps
        current = bin_mean_current(delay - start, dur, amp, stop - start)
        return drive_channels(conductance, current)


class _DenseInput:
    """A dense (channels, steps) drive input, handed out in blocks as :class:`_DriveInput` does."""

    def __init__(self, values: np.ndarray):
        self._values = np.asarray(values, dtype=np.float32)
        self.n_channels, self.n_steps = self._values.shape

    def block(self, start: int, stop: int) -> np.ndarray:
        """Steps ``start .. stop - 1``, time first: (stop - start, channels)."""
        return np.ascontiguousarray(self._values[:, start:stop].T)


def _check_channel_layout(config, n_inputs: int, n_segments: int, path: Path) -> None:
    if config.event_channels != 2 * n_inputs or config.n_tasks - 1 != n_segments:
        raise CheckpointError(
            f"{path}: the model has {config.event_channels} event channels and {config.n_tasks - 1} "
            f"voltage outputs, but its cell has {n_inputs} input segments (x2 kinds) and "
            f"{n_segments} segments; the checkpoint is inconsistent."
        )


def _fill_probes(probes: Sequence, model_imem: np.ndarray, n_segments: int, on_tvec: Callable) -> None:
    """``probe.data = probe.get_transformation_matrix() @ imem`` for every probe, as LFPy does.

    The product is taken on the model's 1 ms grid and then interpolated onto ``tvec``, which
    equals interpolating ``imem`` first (both are linear) at a fraction of the cost.
    """
    for probe in probes:
        matrix = probe.get_transformation_matrix()
        if matrix.shape[-1] != n_segments:
            raise ValueError(f"{type(probe).__name__}'s transformation matrix has {matrix.shape[-1]} "
                             f"columns; the cell has {n_segments} segments.")
        probe.data = on_tvec(matrix @ model_imem)


INTERPOLATION_BLOCK_ELEMENTS = 1 << 14
"""Values interpolated at once (rows x times): temporaries stay small next to the result."""


def _interpolated(values: np.ndarray, t_begin: float, times: np.ndarray) -> np.ndarray:
    """``values`` (..., n) sampled at ``t_begin + k`` ms, linearly interpolated at ``times`` (ms).

    The result is the only array of its size made: it is filled in blocks of about
    :data:`INTERPOLATION_BLOCK_ELEMENTS` values.
    """
    position = np.clip((times - t_begin) / MODEL_STEP_MS, 0.0, values.shape[-1] - 1)
    left = np.minimum(np.floor(position).astype(np.int64), values.shape[-1] - 2)
    weight = position - left
    result = np.empty(values.shape[:-1] + times.shape, dtype=np.result_type(values, weight))
    columns = max(1, INTERPOLATION_BLOCK_ELEMENTS // max(1, int(np.prod(values.shape[:-1]))))
    for start in range(0, times.size, columns):
        block = slice(start, start + columns)
        result[..., block] = values[..., left[block]] * (1.0 - weight[block])
        result[..., block] += values[..., left[block] + 1] * weight[block]
    return result


def _probe_file_names(probes: Sequence) -> list[str]:
    """LFPy's data set names: the probe's class name (``RecExtElectrode``, ``CurrentDipoleMoment``).

    LFPy cannot write two probes of one class to a file; here a repeated class gets a running
    number from its second probe on (``RecExtElectrode``, ``RecExtElectrode1``, ...).
    """
    class_names = [type(probe).__name__ for probe in probes]
    numbers = [class_names[:position].count(name) for position, name in enumerate(class_names)]
    return [f"{name}{number or ''}" for name, number in zip(class_names, numbers)]


def _one_segment(idx, label: str) -> int:
    """The segment index of a synapse: an int, or a one-element array as LFPy's index helpers return."""
    indices = np.ravel(np.asarray(idx))
    if indices.size != 1 or not np.issubdtype(indices.dtype, np.integer):
        raise SynapseMappingError(f"{label}: idx must be one segment index (an int or a one-element "
                                  f"array), got {idx!r}; attach one synapse per segment.")
    return int(indices[0])


def _write_probe_file(probes: Sequence, file_name) -> None:
    if file_name is None:
        raise ValueError("to_file=True needs a file_name.")
    path = Path(file_name)
    if path.suffix != ".h5":
        path = path.with_name(path.name + ".h5")
    with h5py.File(path, "w") as h5:
        for name, probe in zip(_probe_file_names(probes), probes):
            h5.create_dataset(name, data=probe.data)
