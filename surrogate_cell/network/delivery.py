"""Events into one batch of cells: delayed delivery of the spikes :class:`~surrogate_cell.spikes.SpikeDetector` finds.

Time convention (the model's): step ``t`` takes the events of bin ``[t, t+1)`` and gives the
voltages at ``t+1``. A spike is the upward threshold crossing of the soma voltage, at the
time linearly interpolated between the 1 ms samples, so it lies in ``(t, t+1]``. As a NEURON
``NetCon`` does, a spike at time ``s`` over a synapse of delay ``d`` acts at ``s + d``, i.e.
in bin ``floor(s + d)``; with ``d >= 1`` ms that is never a bin already stepped.

Delivery is a ring buffer of event counts, (``max_delay + 1`` bins, cells, channels), filled
with one ``index_put_`` per step from the synapses of all spiking cells (found through a CSR
index by presynaptic cell) and emptied one bin per step. Nothing loops over cells or synapses.
"""

from __future__ import annotations

import numpy as np
import torch

from surrogate_cell.network.connectivity import ConnectionTable


class SpikeDelivery:
    """Delayed events onto one batch of ``n_rows`` cells with ``n_channels`` input channels each.

    ``synapses`` are the synapses onto these cells; ``row_of_gid`` maps every global cell id to
    its row in the batch (-1 for cells elsewhere); ``n_gids`` is the number of cells in the network.
    """

    def __init__(self, synapses: ConnectionTable, row_of_gid: np.ndarray, n_gids: int, n_rows: int,
                 n_channels: int, device: torch.device):
        order = np.argsort(synapses.pre_gid, kind="stable")
        synapses = synapses.select(order)
        self.n_bins = synapses.max_delay_ms() + 1
        self.pointers = torch.as_tensor(np.searchsorted(synapses.pre_gid, np.arange(n_gids + 1)), device=device)
        self.rows = torch.as_tensor(row_of_gid[synapses.post_gid], device=device)
        self.channels = torch.as_tensor(synapses.channel, device=device)
        self.delays = torch.as_tensor(synapses.delay_ms, dtype=torch.float64, device=device)
        self.ring = torch.zeros(self.n_bins, n_rows, n_channels, dtype=torch.uint8, device=device)
        self.merged_events = torch.zeros((), dtype=torch.int64, device=device)
        self._one = torch.ones((), dtype=torch.uint8, device=device)

    def reset(self) -> None:
        """Forget every scheduled event (a new run starts)."""
        self.ring.zero_()
        self.merged_events.zero_()

    def deliver(self, gids: torch.Tensor, times: torch.Tensor) -> None:
        """Schedule the events of spikes (global ``gids`` at ``times`` ms) over all their synapses here."""
        starts = self.pointers[gids]
        counts = self.pointers[gids + 1] - starts
        spike_of_synapse = torch.repeat_interleave(torch.arange(gids.numel(), device=gids.device), counts)
        if spike_of_synapse.numel() == 0:
            return
        first_of_spike = torch.cumsum(counts, 0) - counts
        synapse = (starts[spike_of_synapse] + torch.arange(spike_of_synapse.numel(), device=gids.device)
                   - first_of_spike[spike_of_synapse])
        bins = torch.floor(times[spike_of_synapse] + self.delays[synapse]).long()
        self.ring.index_put_((bins % self.n_bins, self.rows[synapse], self.channels[synapse]),
                             self._one.expand(synapse.numel()), accumulate=True)

    def take(self, bin_ms: int, extra_rows: torch.Tensor, extra_channels: torch.Tensor,
             dtype: torch.dtype) -> torch.Tensor:
        """The binary events (n_rows, n_channels) of bin ``bin_ms``, with extra events (e.g. drive) added.

        Several events in one bin of one channel count as one (the model was trained on binary
        events); how many were merged so is added up in :attr:`merged_events`.
        """
        counts = self.ring[bin_ms % self.n_bins]
        if extra_rows.numel():
            counts.index_put_((extra_rows, extra_channels), self._one.expand(extra_rows.numel()),
                              accumulate=True)
        self.merged_events += counts.sum(dtype=torch.int64) - torch.count_nonzero(counts)
        events = counts.clamp(max=1).to(dtype)
        counts.zero_()
        return events
