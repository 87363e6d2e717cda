"""Stepping engine for SRM models: the filter bank as a recursive filter, projected once.

An SRM's projection is linear in the filtered inputs, and each exponential kernel truncated to
the window obeys ``f(t+1) = a f(t) + x(t) - a^W x(t-W)`` (``a = exp(-1/tau)``). So the
engine keeps, per cell and time constant, the *projected* filter state (n_cells, n_taus,
hidden) and updates it each step with the projection rows of the events that enter and leave
the window (sparse: a gather of weight rows per event). The MLP and towers then run on
(n_cells, hidden); the MLP and the spike tower once more for the window without its newest
column (the "one step earlier" spike logit, whose threshold crossing is a spike) — only for
the cells whose spike logit is above threshold, the only ones that can cross. With
dendritic subunits, the sections' filtered input sums (n_cells, n_taus, 2 n_sections + 1) are
recursive filters of the same kind, and the subunit MLP runs on them each step. Same API
and time convention as :class:`~surrogate_cell.engine.FullWindowStepper`, and the same
outputs up to round-off.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from surrogate_cell.engine.stepper import (
    adopt_model,
    check_finite,
    expanded_history,
    within_training_range,
)
from surrogate_cell.models.normalisation import Normalisation
from surrogate_cell.models.srm import SRM, exponential_kernels, spike_onsets, spike_train


class SRMStepper:
    """Steps ``n_cells`` cells sharing an :class:`~surrogate_cell.models.SRM`, 1 ms at a time.

    :meth:`reset` sets the history, :meth:`step` takes the events of ``[t, t+1)`` and returns
    the voltages (n_cells, S) mV at ``t+1``; :attr:`spike_logits` holds the spike-task output.
    The window of inputs (events and the somatic spike train) is kept as a ring buffer, only
    to know what leaves the window. ``logit_thresholds`` (n_cells,) gives every cell its own
    spike-logit threshold (default: the model's calibrated one for all), so that a calibration
    tries many thresholds in one batched run.
    """

    def __init__(self, model: SRM, normalisation: Normalisation, n_cells: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 logit_thresholds: Tensor | None = None):
        if not isinstance(model, SRM):
            raise TypeError(f"SRMStepper steps SRM models, not {type(model).__name__}")
        adopt_model(self, model, normalisation, n_cells, device, dtype)
        config = model.config
        # events, the somatic spike train and the feedback segments' event trains
        self.trains = torch.tensor([config.soma_segment, *config.feedback_segments], device=device)
        self.n_inputs = self.n_events + len(self.trains)
        self.n_taus = len(config.all_taus)
        self.width = config.width  # projection width: all ensemble members together
        decay = torch.tensor([math.exp(-1.0 / tau) for tau in config.all_taus], device=device, dtype=dtype)
        self.decay = decay[:, None]
        self.leaving_weight = (decay ** self.window)[:, None]
        self.edge_weight = (decay ** (self.window - 1))[:, None]
        # (n_inputs, n_taus, width): pooled taus are spread over their pools' inputs
        self.rows = model.projection_rows().to(device, dtype).contiguous()
        self.kernels = exponential_kernels(config.all_taus, self.window).to(device, dtype)  # (W, taus)
        self.flat_rows = self.rows.view(self.n_inputs, self.n_taus * self.width)
        self.bias = model.projection.bias.detach().to(device, dtype)
        self.subunits = model.subunits
        if self.subunits is not None:
            n_short = len(config.taus)  # subunits read the per-channel time constants only
            self.section_map = model.section_map.to(device, dtype)
            self.section_decay, self.section_leaving, self.section_edge = (
                weights[:n_short] for weights in (self.decay, self.leaving_weight, self.edge_weight))
            self.section_state = torch.zeros(n_cells, n_short, self.section_map.shape[1], device=device, dtype=dtype)
        self.threshold_z = config.spike_threshold_z
        self.train_thresholds = torch.tensor([self._threshold(), *config.feedback_thresholds_z], device=device,
                                             dtype=dtype)
        self.logit_thresholds = self._logit_thresholds(logit_thresholds)
        self.soma = config.soma_segment
        self.state = torch.zeros(n_cells, self.n_taus, self.width, device=device, dtype=dtype)
        # binary events: a bool ring buffer and sparse projections; drive (conductances): dense
        self.dense = config.drive_input
        self.input_dtype = dtype if self.dense else torch.bool
        self.inputs = torch.zeros(n_cells, self.window, self.n_inputs, device=device, dtype=self.input_dtype)
        self.head = 0  # ring position of the oldest window column
        self.last_above = torch.zeros(n_cells, len(self.trains), dtype=torch.bool, device=device)
        self.latest_z = torch.zeros(n_cells, self.n_segments, device=device, dtype=dtype)
        self.spike_logits = torch.zeros(n_cells, device=device, dtype=dtype)
        self.steps_taken = 0

    @torch.no_grad()
    def reset(self, voltage_history_mv: Tensor, event_history: Tensor | None = None) -> None:
        """Start from a history: voltages (n_cells or 1, W, S) mV, events (n_cells or 1, W, E)."""
        z, events = expanded_history(self, voltage_history_mv, event_history)
        spikes = torch.stack([spike_train(z[..., self.soma], self.threshold_z)]
                             + [spike_onsets(z[..., segment], threshold) for segment, threshold
                                in zip(self.trains[1:].tolist(), self.train_thresholds[1:].tolist())],
                             dim=-1)  # (cells, W, trains)
        # The state describes the window of the previous step (as the incremental stepper's),
        # which step() moves on by one column. The model pairs event bin s with the voltage
        # at s, and the history's voltages are one ms later than its event bins.
        earlier_spikes = torch.cat([torch.zeros_like(spikes[:, :1]), spikes[:, :-1]], dim=1)
        earlier_spikes[:, :2] = 0  # the model never counts its oldest column as a spike onset
        previous = torch.cat([events, earlier_spikes], dim=-1)  # (cells, W, inputs)
        filtered = torch.einsum("cwi,wk->cik", previous, self.kernels)
        self.state = torch.einsum("cik,ikh->ckh", filtered, self.rows)
        if self.subunits is not None:
            n_short = self.section_state.shape[1]
            self.section_state = torch.einsum("cik,im->ckm", filtered[..., :n_short], self.section_map)
        self.inputs = previous.to(self.input_dtype)
        if self.dense:
            self.projected_ring = torch.einsum("cwi,ikh->cwkh", previous.to(self.dtype), self.rows)
        self.head = 0
        self.pending_spike = spikes[:, -1].bool()  # (cells, trains)
        self.last_above = z[:, -1, self.trains] > self.train_thresholds
        self.latest_z = z[:, -1].clone()
        self.steps_taken = 0

    @torch.no_grad()
    def step(self, events: Tensor) -> Tensor:
        """Advance one ms: ``events`` (n_cells, E) of ``[t, t+1)`` -> voltages (n_cells, S) mV at ``t+1``."""
        events = torch.as_tensor(events, device=self.device)
        entering = torch.cat([events.to(self.input_dtype), self.pending_spike.to(self.input_dtype)], dim=1)
        newest = self.head
        leaving = self.inputs[:, newest].clone()  # a view would see the overwrite below
        self.inputs[:, newest] = entering
        self.head = (newest + 1) % self.window
        # A spike reaching the oldest column leaves a step before its events: the model
        # never counts its oldest column as a spike onset (see spike_onsets).
        at_edge = self.inputs[:, self.head, self.n_events:].clone()
        self.inputs[:, self.head, self.n_events:] = 0
        edge_rows = torch.einsum("ci,ikh->ckh", at_edge.to(self.dtype), self.rows[self.n_events:])
        active_entering = self._active(entering)
        edge = at_edge[:, 0, None, None].to(self.dtype)  # the somatic spike train (subunits read it)
        projected_entering = self._projected(active_entering)
        if self.dense:  # dense input (no subunits): keep each column's projection instead of projecting it twice
            projected_leaving = self.projected_ring[:, newest].clone()
            self.projected_ring[:, newest] = projected_entering
            self.projected_ring[:, self.head] -= edge_rows
        else:
            active_leaving = self._active(leaving)
            projected_leaving = self._projected(active_leaving)
        self.state = (self.state * self.decay + projected_entering
                      - self.leaving_weight * projected_leaving - self.edge_weight * edge_rows)
        now, sections_entering = self.state.sum(dim=1) + self.bias, None
        if self.subunits is not None:
            sections_entering = torch.sparse.mm(active_entering, self.section_map)[:, None]
            self.section_state = (self.section_state * self.section_decay + sections_entering
                                  - self.section_leaving * torch.sparse.mm(active_leaving, self.section_map)[:, None]
                                  - self.section_edge * edge * self.section_map[-1])
            now = now + self.subunits(self.section_state)
        voltage_z, self.spike_logits = self.model.heads(now)
        gate = self._spike_gate(projected_entering, sections_entering)
        voltage_z = voltage_z + gate[:, None] * self.model.spike_jump
        self.latest_z = within_training_range(voltage_z, self.z_bounds)
        above = self.latest_z[:, self.trains] > self.train_thresholds
        self.pending_spike = above & ~self.last_above
        self.last_above = above
        self.steps_taken += 1
        voltage = self.latest_z * self.std + self.mean
        check_finite(voltage, self.steps_taken)
        return voltage

    def _spike_gate(self, projected_entering: Tensor, sections_entering: Tensor | None) -> Tensor:
        """The model's spike gate: 1 where the spike logit crosses its threshold upwards.

        The model compares with the logit of this window without its newest column ("one
        step earlier"). Only cells whose logit is above threshold now can cross, so that logit
        (the MLP, spike head and subunits once more) is computed for them alone.
        """
        gate = torch.zeros_like(self.spike_logits)
        candidates = torch.nonzero(self.spike_logits > self.logit_thresholds).flatten()
        if candidates.numel() == 0:
            return gate
        state = self.state[candidates]
        earlier = ((state - projected_entering[candidates]) / self.decay).sum(dim=1) + self.bias
        if sections_entering is not None:
            earlier = earlier + self.subunits(
                (self.section_state[candidates] - sections_entering[candidates]) / self.section_decay)
        gate[candidates] = self.model.spike_gate(self.spike_logits[candidates], self.model.spike_logit(earlier),
                                                 self.logit_thresholds[candidates])
        return gate

    def _logit_thresholds(self, values: Tensor | None) -> Tensor:
        """(n_cells,) spike-logit thresholds: ``values``, or the model's for every cell."""
        if values is None:
            return torch.full((self.n_cells,), float(self.model.config.spike_logit_threshold),
                              device=self.device, dtype=self.dtype)
        values = torch.as_tensor(values, device=self.device, dtype=self.dtype)
        if values.shape != (self.n_cells,):
            raise ValueError(f"logit_thresholds has shape {tuple(values.shape)}; give one threshold per cell, "
                             f"shape ({self.n_cells},)")
        return values

    def _threshold(self) -> float:
        return math.inf if self.threshold_z is None else self.threshold_z

    def _active(self, columns: Tensor) -> Tensor:
        """(n_cells, n_inputs) bool -> the same as a sparse matrix: about 1 % of the inputs are
        active, and ``index_add_`` was 10-100 times slower than a sparse product in float64.
        Drive inputs (conductances, dense) stay dense."""
        if self.dense:
            return columns.to(self.dtype)
        indices = torch.nonzero(columns).t()  # row-major order: already coalesced
        return torch.sparse_coo_tensor(
            indices, torch.ones(indices.shape[1], device=self.device, dtype=self.dtype),
            (self.n_cells, self.n_inputs), is_coalesced=True, check_invariants=False)

    def _projected(self, active: Tensor) -> Tensor:
        """Projection rows summed over the active inputs (sparse, see :meth:`_active`) -> (n_cells, taus, hidden)."""
        product = active @ self.flat_rows if self.dense else torch.sparse.mm(active, self.flat_rows)
        return product.view(self.n_cells, self.n_taus, self.width)

    def state_bytes(self) -> int:
        """Bytes of per-cell state: projected filters and the input ring buffer."""
        sections = 0 if self.subunits is None else self.section_state.numel() * self.section_state.element_size()
        if self.dense:
            sections += self.projected_ring.numel() * self.projected_ring.element_size()
        return (self.state.numel() * self.state.element_size() + sections
                + self.inputs.numel() * self.inputs.element_size())

    def flop_breakdown(self, event_density: float = 0.01) -> dict[str, int]:
        """FLOPs one cell needs per step, by part (multiply-adds count 2), events at ``event_density``.

        The filter update adds the projection rows of the events entering and leaving the
        window and decays the state; the subunits, MLP, towers and spike head run on the
        projected features once. Not counted: the "one step earlier" logit, computed again
        only for the few cells whose spike logit is above threshold.
        """
        config = self.model.config
        rows_added = 2 * event_density * self.n_events  # entering + leaving
        spike_head = 2 * config.members * (2 * config.hidden * config.spike_hidden + config.spike_hidden)
        tower_rows = self.model.towers.out_features
        subunits = 0
        if config.subunit_hidden:
            n_features, hidden = 3 * len(config.taus) + 1, config.subunit_hidden
            per_section = 2 * (n_features * hidden + hidden * hidden + hidden * config.subunit_out
                               + config.subunit_out * config.hidden)
            subunits = config.members * config.n_sections * per_section
        return {
            "filter update": int(rows_added * self.n_taus * self.width + 3 * self.n_taus * self.width),
            "subunits": subunits,
            "mlp": 2 * config.mlp_layers * config.members * config.hidden ** 2,
            "towers": 2 * 2 * self.width * tower_rows,
            "spike head": spike_head,  # 0 without a spike head: the spike logit is a tower row
        }

    def flops_per_cell_step(self, event_density: float = 0.01) -> int:
        """Total of :meth:`flop_breakdown`."""
        return sum(self.flop_breakdown(event_density).values())
