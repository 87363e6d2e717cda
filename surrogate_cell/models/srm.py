"""SRM: a spike-response multitask network, driven by synaptic events and its own spikes.

Like the spike response model of Gerstner & Kistler, every segment's voltage is a function of
filtered synaptic input plus the after-effects of the cell's own somatic spikes, and nothing
else: the model never reads its own past sub-threshold voltages, so a free run cannot
accumulate errors and drift (the failure of the voltage-feedback TCN models: the published
MH, MMoE and MMoEEx). The shipped default ``l5pc-default`` is an ensemble of SRMs; what was
measured on the way is in ``docs/experiments.md``.

- **Filter bank.** Each event channel (and the somatic spike train, read from the soma
  voltage of the input window with a threshold) is convolved over the window with fixed
  causal exponential kernels ``exp(-lag / tau)`` (``taus``), one matrix product.
- **Pooled long memory.** ``pooled_taus`` (e.g. 128 and 256 ms, with a window of 400 ms)
  filter only a few pooled inputs: the mean event rate of every pool of event channels
  (``input_pools``: excitatory / inhibitory x section type, from the training data) and the
  somatic spike train. A spiking cell remembers its input for hundreds of ms (after-
  hyperpolarisation, dendritic calcium; ``examples/input_memory.py``), but long per-channel
  filters let the model memorise its training simulations; pooled ones add a dozen features.
  The pooled projection is linear in the events, so :meth:`SRM.projection_rows` folds it
  into per-channel rows and the stepping engine runs it at no extra cost.
- **Dendritic subunits.** With ``subunit_hidden > 0`` every dendritic section (branch) is a
  subunit: its segments' filtered excitatory and inhibitory inputs, summed, the filtered
  somatic spike train (a back-propagating spike unblocks NMDA receptors) and the section's
  distance from the soma go through a small ELU MLP shared by all sections, whose outputs join
  the projection. The synapses are AMPA + NMDA, and NMDA is a branch-local non-linearity that a
  projection linear in the inputs of the whole cell can only approximate. Section sums are
  linear in the events, so the stepping engine keeps them as recursive filters too.
- **Section projection.** With ``section_projection`` the projection reads every section's
  summed excitatory and inhibitory events (and the spike train) instead of every segment's:
  164 instead of 1284 inputs for the Hay cell, so ~8x fewer projection weights to fit from
  the same data (fewer, spatially pooled inputs generalise better from little data, at the
  price of where along a long section the inputs arrive). Being linear in the events, it too
  folds into per-channel rows for the stepping engine.
- **Shared trunk (MH: hard parameter sharing).** A linear projection of all filtered
  inputs to ``hidden`` features, then an ELU MLP.
- **Per-task linear towers.** Every task (segment voltages, spike logit) reads the
  projection (its linear response) and the MLP output (the non-linear correction) through
  one stacked matrix product.
- **Float32 towers.** The towers run in float32 also under bfloat16 autocast: voltages of
  strongly coupled neighbours (soma and apical trunk) differ by ~0.01 mV, yet those
  differences set the membrane currents and so the LFP; bfloat16 rounds to ~0.02 mV.
- **Spike head.** The spike logit is one more tower, or with ``spike_hidden > 0`` a small
  ELU MLP of its own on the tower inputs (spikes are a sharper, more non-linear function of
  the input than sub-threshold voltages).
- **Members.** With ``members > 1`` the model is an ensemble of that many SRMs on the same
  filter bank (:mod:`surrogate_cell.training.ensemble` builds one from trained SRMs): the
  projection is ``members x hidden`` wide, each member has its own MLP and spike head
  (grouped matrix products), the towers average the members' voltages and the spike logit
  is the members' mean. Independently trained members make partly independent errors,
  which the average shrinks.
- **Spikes.** A predicted spike adds a jump ``spike_jump`` (z units, one value per segment)
  to the voltages: weighted by the spike probability in training (the mean-square optimal
  prediction), all-or-none in evaluation mode, where a spike is an upward crossing of
  ``spike_logit_threshold`` by the spike logit, so that free runs produce somatic spikes that
  cross the soma-voltage threshold. Threshold and jump are calibrated after training
  (:mod:`surrogate_cell.training.calibrate`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import SurrogateConfig, split_outputs
from .registry import register_family
from .tcn import MaskDropout


@dataclass
class SRMConfig(SurrogateConfig):
    """SRM sizes and options.

    ``taus``: time constants (ms) of the exponential filter bank; ``hidden``: width of the
    projection and MLP layers; ``mlp_layers``: number of ELU layers after the projection;
    ``spike_hidden``: width of the spike head's hidden layer (0: the spike logit is a linear
    tower like the voltages); ``pooled_taus``: time constants (ms) applied only to the pooled
    inputs (pool means of the event channels, and the spike train).
    ``subunit_hidden``: width of the dendritic subunit MLP (0: no subunits); ``subunit_out``:
    outputs per subunit. ``section_projection``: the projection reads per-section sums of the
    filtered events instead of per-segment ones.
    ``input_pools`` (pool index of every event channel, needed with ``pooled_taus``),
    ``input_sections`` (section index of every input segment) and ``section_distances`` (mm
    from the soma, per section; both needed with subunits, ``input_sections`` also with
    ``section_projection``),
    ``soma_segment`` (the soma's voltage channel) and ``spike_threshold_z`` (the soma-voltage
    spike threshold in z units) come from the training data; ``spike_threshold_z: null``
    disables the spike-history input. ``dendritic_feedback``: the model also reads the upward
    crossings of ``feedback_thresholds_z`` by its own voltages of ``feedback_segments`` (filled in
    from the training cell: the apical Ca hot zone at -20 mV), a dendritic spike fed back as the
    somatic spike is. ``drive_input`` (from the training data): the event
    channels carry synaptic conductances and the somatic current
    (:func:`surrogate_cell.synapses.drive_channels`) instead of binary events.
    """

    voltage_input: bool = False
    taus: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
    hidden: int = 256
    mlp_layers: int = 2
    spike_hidden: int = 0
    soma_segment: int = 0
    spike_threshold_z: float | None = None
    spike_logit_threshold: float = 0.0
    members: int = 1
    pooled_taus: tuple[float, ...] = ()
    input_pools: tuple[int, ...] = ()
    subunit_hidden: int = 0
    subunit_out: int = 8
    input_sections: tuple[int, ...] = ()
    section_distances: tuple[float, ...] = ()
    section_projection: bool = False
    drive_input: bool = False
    dendritic_feedback: bool = False
    feedback_segments: tuple[int, ...] = ()
    feedback_thresholds_z: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        """Validate: events-only, positive time constants."""
        super().__post_init__()
        self.taus = tuple(float(t) for t in self.taus)
        if self.voltage_input:
            raise ValueError("the srm family reads events and somatic spikes only; "
                             "set voltage_input: false")
        self.pooled_taus = tuple(float(t) for t in self.pooled_taus)
        self.input_pools = tuple(int(p) for p in self.input_pools)
        if not self.taus or min(self.taus + self.pooled_taus) <= 0:
            raise ValueError("taus and pooled_taus must be positive time constants (ms)")
        if self.pooled_taus and len(self.input_pools) != self.event_channels:
            raise ValueError(f"pooled_taus need input_pools with one pool per event channel "
                             f"({self.event_channels}), got {len(self.input_pools)}")
        if self.input_pools and min(self.input_pools) < 0:
            raise ValueError("input_pools must be non-negative pool indices")
        self.input_sections = tuple(int(i) for i in self.input_sections)
        self.section_distances = tuple(float(d) for d in self.section_distances)
        self.feedback_segments = tuple(int(i) for i in self.feedback_segments)
        self.feedback_thresholds_z = tuple(float(z) for z in self.feedback_thresholds_z)
        if len(self.feedback_segments) != len(self.feedback_thresholds_z):
            raise ValueError(f"feedback_segments ({len(self.feedback_segments)}) and feedback_thresholds_z "
                             f"({len(self.feedback_thresholds_z)}) need one threshold per segment")
        if self.feedback_segments and (self.pooled_taus or self.subunit_hidden or self.section_projection):
            raise ValueError("dendritic feedback supports neither pooled_taus, subunits nor section_projection")
        if self.drive_input and (self.pooled_taus or self.subunit_hidden or self.section_projection):
            raise ValueError("pooled_taus, subunit_hidden and section_projection read binary excitatory/"
                             "inhibitory event channels; a drive model (conductance input) supports none of them")
        if self.subunit_hidden or self.section_projection:
            self._check_sections()
        if self.hidden < 1 or self.mlp_layers < 0 or self.spike_hidden < 0 or self.members < 1:
            raise ValueError("hidden and members must be >= 1, mlp_layers and spike_hidden >= 0")
        if self.members > 1 and not self.spike_hidden:
            raise ValueError("an ensemble (members > 1) needs spike_hidden > 0: every member has a spike head")
        if not 0 <= self.soma_segment < self.n_voltage_tasks:
            raise ValueError(f"soma_segment {self.soma_segment} is not a voltage channel")

    def _check_sections(self) -> None:
        if self.subunit_hidden < 0 or self.subunit_out < 1:
            raise ValueError("subunit_hidden must be >= 0 and subunit_out >= 1")
        if 2 * len(self.input_sections) != self.event_channels:
            raise ValueError(f"subunits and section_projection need input_sections with one section per "
                             f"input segment ({self.event_channels // 2}), got {len(self.input_sections)}")
        if min(self.input_sections) < 0:
            raise ValueError("input_sections must be non-negative section indices")
        if self.subunit_hidden and len(self.section_distances) != max(self.input_sections) + 1:
            raise ValueError(f"subunits need section_distances with one distance per section "
                             f"({max(self.input_sections) + 1}), got {len(self.section_distances)}")

    @property
    def n_sections(self) -> int:
        """Dendritic sections with inputs (0 without subunits or section projection)."""
        return max(self.input_sections) + 1 if self.subunit_hidden or self.section_projection else 0

    @property
    def n_projected_inputs(self) -> int:
        """Inputs of the per-channel filters: event channels + spike train, or with
        ``section_projection`` every section's excitatory and inhibitory sum + spike train."""
        if self.section_projection:
            return 2 * self.n_sections + 1
        return self.event_channels + 1 + len(self.feedback_segments)

    @property
    def width(self) -> int:
        """Width of the projection (all members together)."""
        return self.members * self.hidden

    @property
    def n_pooled(self) -> int:
        """Pooled inputs: the pools of event channels and the spike train (0 without pooled_taus)."""
        return max(self.input_pools) + 2 if self.pooled_taus else 0

    @property
    def all_taus(self) -> tuple[float, ...]:
        """Per-channel time constants, then the pooled ones."""
        return self.taus + self.pooled_taus

    @property
    def n_filtered(self) -> int:
        """Filtered input features: projected inputs x taus + pooled inputs x pooled taus."""
        return self.n_projected_inputs * len(self.taus) + self.n_pooled * len(self.pooled_taus)


def exponential_kernels(taus, window: int) -> Tensor:
    """(window, n_taus) causal kernels: column k weighs the input ``lag`` ms old by exp(-lag/tau_k).

    The newest window column (the last) has lag 0. Float64, so that a float64 model and the
    stepping engine's recursive filter (``a^lag`` with ``a = exp(-1/tau)``) agree to round-off.
    """
    lags = torch.arange(window - 1, -1, -1, dtype=torch.float64)[:, None]
    return torch.exp(-lags / torch.tensor(taus, dtype=torch.float64)[None, :])


def pools_by_section_type(input_section_types) -> tuple[int, ...]:
    """``input_pools`` for event channels laid out as all excitatory rows, then all inhibitory
    rows, one per input segment of the given section types: one pool per (kind, section type)."""
    types = [str(t) for t in input_section_types]
    names = sorted(set(types))
    pools = [names.index(t) for t in types]
    return tuple(pools + [pool + len(names) for pool in pools])


def sections_of_inputs(segment_names, midpoints, input_segments, soma_segment: int
                       ) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """``input_sections`` and ``section_distances`` for dendritic subunits: the section (name
    before the "(" of a NEURON segment name) of every input segment, numbered in sorted order,
    and every section's largest distance of an input segment's midpoint from the soma's (mm)."""
    names = [str(segment_names[i]).split("(")[0] for i in input_segments]
    section_names = sorted(set(names))
    sections = tuple(section_names.index(name) for name in names)
    midpoints = np.asarray(midpoints, dtype=float)
    distance = np.linalg.norm(midpoints[list(input_segments)] - midpoints[soma_segment], axis=1) / 1000.0
    farthest = np.zeros(len(section_names))
    np.maximum.at(farthest, list(sections), distance)
    return sections, tuple(float(d) for d in farthest)


def pool_means(input_pools, n_inputs: int) -> Tensor:
    """(n_pools + 1, n_inputs) float64 matrix averaging the event channels of every pool; the
    spike train (the last input) is the last pool, on its own."""
    pools = torch.as_tensor(input_pools, dtype=torch.long)
    matrix = torch.zeros(int(pools.max()) + 2, n_inputs, dtype=torch.float64)
    matrix[pools, torch.arange(pools.numel())] = 1.0
    matrix[-1, -1] = 1.0
    return matrix / matrix.sum(dim=1, keepdim=True).clamp(min=1.0)


def section_sums(input_sections, n_inputs: int) -> Tensor:
    """(n_inputs, 2 n_sections + 1) float64 map of the inputs (excitatory rows, inhibitory rows,
    the spike train) onto every section's excitatory sum, inhibitory sum, and the spike train."""
    sections = torch.as_tensor(input_sections, dtype=torch.long)
    n_sections, n_segments = int(sections.max()) + 1, sections.numel()
    matrix = torch.zeros(n_inputs, 2 * n_sections + 1, dtype=torch.float64)
    rows = torch.arange(n_segments)
    matrix[rows, sections] = 1.0
    matrix[n_segments + rows, n_sections + sections] = 1.0
    matrix[-1, -1] = 1.0
    return matrix


def uniform_like_linear(*shape: int, fan_in: int) -> nn.Parameter:
    """A parameter initialised as ``nn.Linear`` initialises its weights and biases."""
    bound = 1.0 / fan_in ** 0.5
    return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))


class DendriticSubunits(nn.Module):
    """Every section's filtered inputs through an ELU MLP shared by all sections (one per
    ensemble member), read out linearly into the projection.

    Input: the section filter state (batch, n_taus, 2 n_sections + 1) of :func:`section_sums`
    mapped inputs; output: (batch, members x hidden), added to the projection.
    """

    def __init__(self, config: SRMConfig):
        """Two ELU layers of ``subunit_hidden`` and ``subunit_out`` outputs per section; the
        readout starts at zero, so an untrained subunit changes nothing."""
        super().__init__()
        members, hidden, out = config.members, config.subunit_hidden, config.subunit_out
        n_features = 3 * len(config.taus) + 1  # excitatory, inhibitory, spike train, distance
        self.n_sections = config.n_sections
        self.register_buffer("distances", torch.tensor(config.section_distances), persistent=False)
        self.weight_in = uniform_like_linear(members, n_features, hidden, fan_in=n_features)
        self.bias_in = uniform_like_linear(members, hidden, fan_in=n_features)
        self.weight_hidden = uniform_like_linear(members, hidden, hidden, fan_in=hidden)
        self.bias_hidden = uniform_like_linear(members, hidden, fan_in=hidden)
        self.weight_out = uniform_like_linear(members, hidden, out, fan_in=hidden)
        self.bias_out = uniform_like_linear(members, out, fan_in=hidden)
        self.readout = nn.Parameter(torch.zeros(members, self.n_sections * out, config.hidden))

    def section_features(self, sections: Tensor) -> Tensor:
        """(batch, n_taus, 2 n_sections + 1) -> (batch, n_sections, 3 n_taus + 1)."""
        n = self.n_sections
        spikes = sections[:, :, -1:].expand(-1, -1, n)
        distances = self.distances.to(sections.dtype).expand(sections.shape[0], 1, n)
        return torch.cat([sections[:, :, :n], sections[:, :, n:2 * n], spikes, distances], dim=1).transpose(1, 2)

    def forward(self, sections: Tensor) -> Tensor:
        """The subunits' contribution to the projection, (batch, members x hidden)."""
        x = self.section_features(sections)
        h = F.elu(torch.einsum("bsf,mfh->bmsh", x, self.weight_in.to(x.dtype)) + self.bias_in[:, None].to(x.dtype))
        h = F.elu(torch.einsum("bmsh,mhj->bmsj", h, self.weight_hidden.to(x.dtype))
                  + self.bias_hidden[:, None].to(x.dtype))
        out = torch.einsum("bmsh,mho->bmso", h, self.weight_out.to(x.dtype)) + self.bias_out[:, None].to(x.dtype)
        return torch.einsum("bmn,mnd->bmd", out.flatten(2), self.readout.to(x.dtype)).flatten(1)


def spike_onsets(soma_z: Tensor, threshold_z: float) -> Tensor:
    """(batch, window) 1 where the soma voltage crosses ``threshold_z`` upwards, else 0.

    The oldest column is never an onset (what came before it is not in the window).
    """
    above = soma_z > threshold_z
    before = F.pad(above[:, :-1], (1, 0), value=True)
    return (above & ~before).to(soma_z.dtype)


def spike_train(soma_z: Tensor, threshold_z: float | None) -> Tensor:
    """:func:`spike_onsets`, or all zeros when there is no threshold (no spike-history input)."""
    return torch.zeros_like(soma_z) if threshold_z is None else spike_onsets(soma_z, threshold_z)


class GroupedLinear(nn.Module):
    """``groups`` independent linear layers in one batched product: (batch, groups x n_in) ->
    (batch, groups x n_out), group ``g`` reading only its own slice of the input."""

    def __init__(self, groups: int, n_in: int, n_out: int):
        """Weights initialised as ``nn.Linear`` would, per group."""
        super().__init__()
        layers = [nn.Linear(n_in, n_out) for _ in range(groups)]
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]))

    def forward(self, x: Tensor) -> Tensor:
        """Apply every group's layer to its slice."""
        groups, n_out, n_in = self.weight.shape
        grouped = x.reshape(x.shape[0], groups, n_in)
        return (torch.einsum("bgi,goi->bgo", grouped, self.weight) + self.bias).flatten(1)


def member_linear(members: int, n_in: int, n_out: int) -> nn.Module:
    """One member's ``nn.Linear`` (checkpoints of single models keep their layout), or one per member."""
    return nn.Linear(n_in, n_out) if members == 1 else GroupedLinear(members, n_in, n_out)


class MemberSpikeHeads(nn.Module):
    """Every member's spike head (ELU MLP on its own projection and MLP output); returns the
    members' mean logit, shape (batch, 1)."""

    def __init__(self, members: int, hidden: int, spike_hidden: int):
        """One hidden layer of ``spike_hidden`` per member."""
        super().__init__()
        self.members, self.hidden = members, hidden
        self.layers = nn.Sequential(GroupedLinear(members, 2 * hidden, spike_hidden), nn.ELU(),
                                    GroupedLinear(members, spike_hidden, 1))

    def forward(self, features: Tensor) -> Tensor:
        """``features`` (batch, 2 x members x hidden): all projections, then all MLP outputs."""
        per_member = features.reshape(features.shape[0], 2, self.members, self.hidden).transpose(1, 2)
        return self.layers(per_member.flatten(1)).mean(dim=1, keepdim=True)


def srm_data_fields(cell_meta: dict, normalisation, fields: dict) -> dict:
    """The SRM config fields that come from the training cell (see :class:`ModelFamily`).

    The soma's voltage channel and its spike threshold in z units always; the input pools when
    the config asks for pooled filters; the input sections and their distances when it asks for
    dendritic subunits or a section projection.
    """
    soma = int(cell_meta["soma_segment"])
    values = {"soma_segment": soma,
              "spike_threshold_z": float((cell_meta["spike_threshold_mv"] - normalisation.mean[soma])
                                         / normalisation.std[soma]),
              "drive_input": cell_meta.get("input_kind") == "drive"}
    if fields.get("dendritic_feedback"):
        if cell_meta.get("ca_segment") is None:
            raise ValueError("dendritic_feedback needs an apical Ca hot zone, and this cell has no apical "
                             "dendrite; set dendritic_feedback: false in the model config.")
        segment = int(cell_meta["ca_segment"])
        values["feedback_segments"] = (segment,)
        values["feedback_thresholds_z"] = (float((CA_EVENT_THRESHOLD_MV - normalisation.mean[segment])
                                                 / normalisation.std[segment]),)
    if fields.get("pooled_taus"):
        values["input_pools"] = pools_by_section_type(
            [cell_meta["section_types"][segment] for segment in cell_meta["input_segments"]])
    if fields.get("subunit_hidden") or fields.get("section_projection"):
        values["input_sections"] = cell_meta["input_sections"]
        values["section_distances"] = cell_meta["section_distances"]
    return values


CA_EVENT_THRESHOLD_MV = -20.0
"""An apical calcium spike: the voltage of the trunk's Ca hot zone (``cell_meta["ca_segment"]``,
~750 um from the soma) crossing this upwards."""

SRM_FLOAT16_WEIGHTS = ("projection.weight",)
"""Weights shipped in float16 (loading casts them back to float32). The projection is the bulk of
the file (one row per filtered input) and tolerates it: its rows are summed into features; the
towers, whose neighbour differences set the LFP, stay float32."""


@register_family("srm", SRMConfig, stepper="surrogate_cell.engine.srm_stepper:SRMStepper",
                 data_fields=srm_data_fields, calibrates_spikes=True, ensembles=True,
                 float16_weights=SRM_FLOAT16_WEIGHTS)
class SRM(nn.Module):
    """Filter bank -> linear projection -> ELU MLP -> per-task linear towers (+ spike jump)."""

    def __init__(self, config: SRMConfig):
        """Build the fixed filter bank and the trainable layers."""
        super().__init__()
        self.config = config
        self.register_buffer("kernels", exponential_kernels(config.taus, config.window),
                             persistent=False)
        if config.pooled_taus:
            self.register_buffer("pool_matrix", pool_means(config.input_pools, config.event_channels + 1),
                                 persistent=False)
            self.register_buffer("pooled_kernels", exponential_kernels(config.pooled_taus, config.window),
                                 persistent=False)
        self.projection = nn.Linear(config.n_filtered, config.width)
        if config.n_sections:
            self.register_buffer("section_map", section_sums(config.input_sections, config.event_channels + 1),
                                 persistent=False)
        self.subunits = DendriticSubunits(config) if config.subunit_hidden else None
        self.build_trunk(config)
        self.spike_jump = nn.Parameter(torch.zeros(config.n_voltage_tasks))

    def build_trunk(self, config: SRMConfig) -> None:
        """The layers after the projection: MLP, spike head and towers (hard parameter sharing).

        Families on the SRM's filter bank with another trunk (:mod:`.srm_moe`) override this.
        """
        self.mlp = nn.Sequential(*(
            layer for _ in range(config.mlp_layers)
            for layer in (member_linear(config.members, config.hidden, config.hidden), nn.ELU(),
                          MaskDropout(config.dropout))
        ))
        if config.members > 1:
            self.spike_head = MemberSpikeHeads(config.members, config.hidden, config.spike_hidden)
        else:
            self.spike_head = (nn.Sequential(nn.Linear(2 * config.hidden, config.spike_hidden), nn.ELU(),
                                             nn.Linear(config.spike_hidden, 1))
                               if config.spike_hidden else None)
        self.towers = nn.Linear(2 * config.width,
                                config.n_voltage_tasks if self.spike_head else config.n_tasks)

    def window_inputs(self, x: Tensor) -> Tensor:
        """(batch, n_inputs, window): the event channels, the somatic spike train and the event
        trains of the feedback segments (upward crossings of their thresholds)."""
        config = self.config
        voltages = x[:, config.event_channels:]
        trains = [spike_train(voltages[:, config.soma_segment], config.spike_threshold_z)]
        trains += [spike_onsets(voltages[:, segment], threshold)
                   for segment, threshold in zip(config.feedback_segments, config.feedback_thresholds_z)]
        return torch.cat([x[:, :config.event_channels], torch.stack(trains, dim=1)], dim=1)

    def filtered_inputs(self, x: Tensor) -> Tensor:
        """(batch, n_filtered): every event channel and the spike train through the filter bank."""
        return self.filter_bank(self.window_inputs(x))

    def filter_bank(self, inputs: Tensor, without_newest: bool = False) -> Tensor:
        """Window inputs (batch, n_inputs, window) -> features (batch, n_filtered); with
        ``without_newest``, of the window without its newest column (the step before)."""
        start = 1 if without_newest else 0
        if without_newest:
            inputs = inputs[..., :-1]
        projected_inputs = inputs
        if self.config.section_projection:
            projected_inputs = torch.einsum("im,biw->bmw", self.section_map.to(inputs.dtype), inputs)
        features = (projected_inputs @ self.kernels[start:].to(inputs.dtype)).flatten(1)
        if not self.config.pooled_taus:
            return features
        pooled = torch.einsum("pc,bcw->bpw", self.pool_matrix.to(inputs.dtype), inputs)
        return torch.cat([features, (pooled @ self.pooled_kernels[start:].to(inputs.dtype)).flatten(1)], dim=1)

    def project(self, inputs: Tensor, without_newest: bool = False) -> Tensor:
        """Window inputs (batch, n_inputs, window) -> projected features (batch, width): the
        projection of the filter bank, plus the dendritic subunits' output."""
        features = self.filter_bank(inputs, without_newest)
        projected = self.projection(features)
        if self.subunits is None:
            return projected
        n_inputs, n_taus = self.config.n_projected_inputs, len(self.config.taus)
        per_input = features[:, :n_inputs * n_taus].reshape(-1, n_inputs, n_taus)
        if self.config.section_projection:  # the filtered inputs are the section sums already
            sections = per_input.transpose(1, 2)
        else:
            sections = torch.einsum("bik,im->bkm", per_input, self.section_map.to(features.dtype))
        return projected + self.subunits(sections)

    def projection_rows(self) -> Tensor:
        """The projection weight as per-input rows (n_inputs, len(all_taus), width): an input
        filtered with ``all_taus[k]`` adds ``rows[i, k]`` per unit (pooled taus: its pool's row
        times its weight in the pool mean; section projection: its section's row)."""
        config = self.config
        n_inputs, weight = config.n_projected_inputs, self.projection.weight.detach()
        per_channel = weight[:, :n_inputs * len(config.taus)].t().reshape(n_inputs, len(config.taus), -1)
        if config.section_projection:
            per_channel = torch.einsum("im,mkh->ikh", self.section_map.to(weight.dtype), per_channel)
        if not config.pooled_taus:
            return per_channel
        per_pool = weight[:, n_inputs * len(config.taus):].t().reshape(config.n_pooled, len(config.pooled_taus), -1)
        spread = torch.einsum("pi,pkh->ikh", self.pool_matrix.to(weight.dtype), per_pool)
        return torch.cat([per_channel, spread], dim=1)

    def tower_inputs(self, projected: Tensor) -> Tensor:
        """(batch, 2 hidden): the projection (linear response) and the MLP's correction."""
        return torch.cat([projected, self.mlp(projected)], dim=1)

    def heads(self, projected: Tensor) -> tuple[Tensor, Tensor]:
        """Sub-threshold voltages and spike logit from the projected features (batch, hidden)."""
        features = self.tower_inputs(projected)
        if self.spike_head is None:
            return split_outputs(self.float32_towers(features))
        return self.float32_towers(features), self.spike_logit_from(features)

    def float32_towers(self, features: Tensor) -> Tensor:
        """The towers in at least float32, also under bfloat16 autocast."""
        dtype = torch.promote_types(features.dtype, torch.float32)
        with torch.autocast(features.device.type, enabled=False):
            return F.linear(features.to(dtype), self.towers.weight.to(dtype), self.towers.bias.to(dtype))

    def spike_logit(self, projected: Tensor) -> Tensor:
        """Only the spike logit (batch,) of :meth:`heads`."""
        return self.spike_logit_from(self.tower_inputs(projected))

    def spike_logit_from(self, features: Tensor) -> Tensor:
        """The spike logit (batch,) from the tower inputs: the spike head, or the last tower."""
        if self.spike_head is None:
            return features @ self.towers.weight[-1] + self.towers.bias[-1]
        return self.spike_head(features)[:, 0]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Voltage predictions (batch, n_tasks - 1) and spike logit (batch,)."""
        inputs = self.window_inputs(x)
        voltage, spike_logit = self.heads(self.project(inputs))
        if self.training:
            gate = torch.sigmoid(spike_logit)
        else:
            # the logit one step earlier, from the window without its newest column
            earlier = self.spike_logit(self.project(inputs, without_newest=True))
            gate = self.spike_gate(spike_logit, earlier)
        return voltage + gate[:, None] * self.spike_jump, spike_logit

    def spike_gate(self, spike_logit: Tensor, earlier_logit: Tensor, threshold: float | Tensor | None = None) -> Tensor:
        """1 where the spike logit crosses ``threshold`` (default ``spike_logit_threshold``;
        a tensor gives one per row) upwards, else 0 (evaluation).

        Only the crossing spikes, as in the calibration: a logit staying above threshold for
        several milliseconds is one spike, not a train of them.
        """
        threshold = self.config.spike_logit_threshold if threshold is None else threshold
        return ((spike_logit > threshold) & (earlier_logit <= threshold)).to(spike_logit.dtype)
