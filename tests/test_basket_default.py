"""The shipped basket-cell surrogate against the NEURON cell of its recipe, as a user runs both.

Both cells get the same LFPy synapses (one AMPANMDA and one GABAA at weight 1 on every segment,
stationary Poisson trains at 10 Hz: input of a kind the model was never trained on) and are
compared on their somatic firing.
"""

import LFPy
import numpy as np
import pytest

from surrogate_cell.cells.build import build_source_cell
from surrogate_cell.cells.solver import DEFAULT_SOLVER, neuron_solver
from surrogate_cell.pretrained import PRETRAINED_DIR
from surrogate_cell.spikes import spike_scores

pytestmark = [
    pytest.mark.neuron,
    pytest.mark.skipif(not (PRETRAINED_DIR / "basket-default.pt").is_file(),
                       reason="needs surrogate_cell/pretrained/basket-default.pt"),
]

DURATION_MS = 2000.0
RATE_HZ = 10.0


def _poisson_trains(n_segments: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    trains = []
    for _ in range(2 * n_segments):
        count = rng.poisson(RATE_HZ * DURATION_MS / 1000.0)
        trains.append(np.sort(rng.uniform(0.0, DURATION_MS, count)))
    return trains


def _drive(cell, trains: list[np.ndarray]) -> None:
    for index in range(cell.totnsegs):
        for kind, syntype in enumerate(("AMPANMDA", "GABAA")):
            synapse = LFPy.Synapse(cell, idx=index, syntype=syntype, weight=1.0)
            synapse.set_spike_times(trains[kind * cell.totnsegs + index])


def _spike_times(t: np.ndarray, v: np.ndarray, threshold: float = -20.0) -> np.ndarray:
    above = v >= threshold
    return t[1:][above[1:] & ~above[:-1]]


@pytest.fixture(scope="module")
def runs():
    from surrogate_cell import SurrogateCell

    neuron_cell = build_source_cell("cells/basket/basket.yaml", tstop=DURATION_MS, dt=DEFAULT_SOLVER.dt)
    trains = _poisson_trains(neuron_cell.totnsegs, seed=11)
    _drive(neuron_cell, trains)
    with neuron_solver():
        neuron_cell.simulate()
    neuron_spikes = _spike_times(neuron_cell.tvec, neuron_cell.somav)
    del neuron_cell
    surrogate = SurrogateCell(model="basket-default", tstop=DURATION_MS)
    _drive(surrogate, trains)
    surrogate.simulate()
    return neuron_spikes, np.asarray(surrogate.spike_times)


def test_surrogate_fires_at_the_neuron_cells_rate(runs):
    neuron_spikes, surrogate_spikes = runs
    assert neuron_spikes.size > 20, "the drive no longer makes the NEURON basket cell fire"
    assert abs(surrogate_spikes.size - neuron_spikes.size) <= 0.25 * neuron_spikes.size


def test_surrogate_spikes_follow_the_neuron_cells(runs):
    neuron_spikes, surrogate_spikes = runs
    assert spike_scores([neuron_spikes], [surrogate_spikes], 3.0)["f1"] >= 0.4

