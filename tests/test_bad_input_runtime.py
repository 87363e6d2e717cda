"""Bad input to the runtime gives one clear error naming the problem and the fix, never a traceback.

- ``python -m surrogate_cell.network``: every bad option value, an unknown or unreadable
  model, an unavailable device, an existing ``--out``;
- checkpoint loading: files torch refuses, malformed metadata, unknown or mistyped config
  fields, and a hostile ``model_config`` whose sizes would need terabytes (refused before
  anything is allocated);
- ``SurrogateCell`` input: spike times and histories the model cannot take, and the memory
  of its input events, which must not grow with ``tstop``.

The checkpoints here are written with ``torch.save`` from a tiny MH model; nothing is mocked.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from surrogate_cell.checkpoint import (
    UNTRAINED_MH,
    CheckpointError,
    load_checkpoint,
    model_meta,
    save_checkpoint,
)
from surrogate_cell.models import build_model
from surrogate_cell.models.normalisation import Normalisation
from surrogate_cell.network.__main__ import main
from surrogate_cell.network.config import NetworkConfigError
from surrogate_cell.network.standard import (
    DEFAULT_EXC_RATE_HZ,
    DEFAULT_INH_RATE_HZ,
    RecurrentNetworkConfig,
)
from tests.conftest import REPO_ROOT

N_SEGMENTS, INPUT_SEGMENTS = 5, [1, 2]


def write_tiny_checkpoint(path) -> None:
    """A tiny MH checkpoint of a made-up 5-segment cell (enough for everything but building the cell)."""
    n_events = 2 * len(INPUT_SEGMENTS)
    model = build_model("mh", {**UNTRAINED_MH, "in_channels": n_events + N_SEGMENTS,
                               "n_tasks": N_SEGMENTS + 1, "event_channels": n_events})
    cell = {"recipe": {"builder": "l5pc"}, "segment_hash": "0" * 64, "section_types": ["soma"] * N_SEGMENTS,
            "soma_segment": 0, "input_segments": INPUT_SEGMENTS, "n_segments": N_SEGMENTS}
    meta = {**model_meta(model, "mh"), "cell": cell, "data": {}, "training": {}}
    normalisation = Normalisation(np.full(N_SEGMENTS, -70.0, np.float32), np.full(N_SEGMENTS, 5.0, np.float32))
    save_checkpoint(path, model, meta, normalisation)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    write_tiny_checkpoint(path)
    return path


def altered(tiny, folder, change, meta_change=None):
    """A copy of the tiny checkpoint with ``change(payload)`` / ``meta_change(meta)`` applied."""
    payload = torch.load(tiny, weights_only=True)
    if meta_change is not None:
        meta = json.loads(payload["meta"])
        meta_change(meta)
        payload["meta"] = json.dumps(meta)
    if change is not None:
        change(payload)
    path = folder / "altered.pt"
    torch.save(payload, path)
    return path


def run_cli(*arguments, cwd=REPO_ROOT) -> subprocess.CompletedProcess:
    """``python -m surrogate_cell.network ARGUMENTS`` in its own process."""
    return subprocess.run([sys.executable, "-m", "surrogate_cell.network", *map(str, arguments)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


# ------------------------------------------------------------------ python -m surrogate_cell.network


@pytest.mark.slow  # a process of its own: about 10 s here
def test_cli_help_describes_every_option_with_its_default():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    for option in ("--model", "--n-cells", "--duration-ms", "--connection-probability",
                   "--synapses-per-connection", "--seed", "--out", "--overwrite", "--threads", "--device"):
        assert option in result.stdout
    text = " ".join(result.stdout.split())  # argparse wraps lines
    assert "(default: 30)" in text and "(default: l5pc-default)" in text and "(default: 1000)" in text


@pytest.mark.slow  # a process of its own: about 10 s here
@pytest.mark.parametrize(("arguments", "message"), [
    (["--n-cells", "1"], "argument --n-cells: must be a whole number >= 2, got 1"),
    (["--connection-probability", "1.5"], "argument --connection-probability: must be a number in [0, 1], got 1.5"),
])
def test_cli_bad_values_exit_2_with_one_message(arguments, message, tmp_path):
    result = run_cli(*arguments, "--out", tmp_path / "run.h5")
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run.h5").exists()


@pytest.mark.parametrize(("arguments", "message"), [
    (["--n-cells", "0"], "--n-cells: must be a whole number >= 2, got 0"),
    (["--n-cells", "-3"], "--n-cells: must be a whole number >= 2, got -3"),
    (["--n-cells", "ten"], "--n-cells: must be a whole number >= 2, got 'ten'"),
    (["--connection-probability", "-0.1"], "--connection-probability: must be a number in [0, 1]"),
    (["--connection-probability", "nan"], "--connection-probability: must be a number in [0, 1], got nan"),
    (["--synapses-per-connection", "0"], "--synapses-per-connection: must be a whole number >= 1, got 0"),
    (["--duration-ms", "0"], "--duration-ms: must be a whole number >= 1, got 0"),
    (["--threads", "0"], "--threads: must be a whole number >= 1, got 0"),
    (["--device", "gpu7"], "--device: device='gpu7' is not a torch device; use 'cpu' or 'cuda'"),
])
def test_every_bad_option_value_is_named(arguments, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main([*arguments, "--out", str(tmp_path / "run.h5")])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--device", "cuda", "--out", str(tmp_path / "run.h5")])
    assert stop.value.code == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_an_unknown_model_is_named(tmp_path, capsys):
    assert main(["--model", "no-such-model", "--out", str(tmp_path / "run.h5")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: Unknown model 'no-such-model'") and "l5pc-default" in error


@pytest.mark.slow  # a process of its own: about 10 s here
def test_an_unreadable_checkpoint_is_called_unreadable_not_a_cell_mismatch(tmp_path):
    (tmp_path / "broken.pt").write_text("not a checkpoint")
    result = run_cli("--model", tmp_path / "broken.pt", "--out", tmp_path / "run.h5")
    assert result.returncode == 2
    assert "broken.pt is not a readable surrogate_cell checkpoint" in result.stderr
    assert "do not match" not in result.stderr and "Traceback" not in result.stderr


def test_a_foreign_checkpoint_is_called_incomplete_not_a_cell_mismatch(tmp_path, capsys):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    assert main(["--model", str(tmp_path / "foreign.pt"), "--out", str(tmp_path / "run.h5")]) == 2
    error = capsys.readouterr().err
    assert "lacks the entries" in error and "do not match" not in error


@pytest.mark.slow  # a process of its own: about 10 s here
def test_an_existing_out_is_refused_without_overwrite(tmp_path):
    (tmp_path / "run.h5").write_text("keep me")
    result = run_cli("--out", tmp_path / "run.h5")
    assert result.returncode == 2
    assert "--out" in result.stderr and "already exists" in result.stderr and "--overwrite" in result.stderr
    assert (tmp_path / "run.h5").read_text() == "keep me"


def test_a_folder_as_out_is_refused(tmp_path, capsys):
    assert main(["--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


@pytest.mark.neuron
@pytest.mark.slow
def test_overwrite_replaces_an_existing_out(tmp_path):
    from surrogate_cell.cells import l5pc
    from surrogate_cell.cells.layout import SYNAPSE_SECTION_TYPES, cell_layout
    from surrogate_cell.checkpoint import save_untrained_checkpoint

    save_untrained_checkpoint(tmp_path / "random.pt", cell_layout(l5pc(), SYNAPSE_SECTION_TYPES))
    (tmp_path / "run.h5").write_text("old")
    common = ["--model", tmp_path / "random.pt", "--n-cells", 2, "--duration-ms", 3, "--out", tmp_path / "run.h5",
              "--device", "cpu"]
    result = run_cli(*common, "--overwrite")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "written to" in result.stdout
    with h5py.File(tmp_path / "run.h5", "r") as written:  # the old text file is gone
        assert "spikes" in written


@pytest.mark.parametrize(("changes", "field"), [
    ({"n_cells": 1}, "n_cells"), ({"n_cells": 0}, "n_cells"),
    ({"connection_probability": 2.0}, "connection_probability"),
    ({"synapses_per_connection": 0}, "synapses_per_connection"), ({"exc_rate_hz": -1.0}, "exc_rate_hz"),
    ({"inhibitory_fraction": 1.0}, "inhibitory_fraction"),
])
def test_the_standard_network_config_refuses_what_it_cannot_build(changes, field):
    with pytest.raises(NetworkConfigError, match=field):
        RecurrentNetworkConfig(**changes)


def test_the_network_default_rates_are_the_poisson_regimes():
    from surrogate_cell.data.inputs import PoissonInputConfig  # data generation: allowed in a test

    assert (DEFAULT_EXC_RATE_HZ, DEFAULT_INH_RATE_HZ) == (PoissonInputConfig.exc_rate_hz,
                                                          PoissonInputConfig.inh_rate_hz)


# ------------------------------------------------------------------ checkpoints


def test_the_tiny_checkpoint_loads(tiny):
    model, normalisation, meta, _ = load_checkpoint(tiny)
    assert meta["family"] == "mh" and normalisation.mean.shape == (N_SEGMENTS,)


def test_a_file_torch_refuses_never_suggests_weights_only_false(tmp_path):
    torch.save({"model": argparse.Namespace(weights=1)}, tmp_path / "objects.pt")  # an object, not plain data
    (tmp_path / "text.pt").write_text("garbage")
    for name, message in (("objects.pt", "holds Python objects other than tensors"),
                          ("text.pt", "is not a readable surrogate_cell checkpoint")):
        with pytest.raises(CheckpointError, match=message) as error:
            load_checkpoint(tmp_path / name)
        assert "weights_only" not in str(error.value) and "pytorch.org" not in str(error.value)


def test_a_truncated_file_is_called_truncated(tiny, tmp_path):
    (tmp_path / "truncated.pt").write_bytes(tiny.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated") as error:
        load_checkpoint(tmp_path / "truncated.pt")
    assert "weights_only" not in str(error.value)


def set_meta(text):
    return lambda payload: payload.update(meta=text)


@pytest.mark.parametrize(("change", "meta_change", "message"), [
    (set_meta("{not json"), None, r"metadata \('meta'\) is not valid JSON"),
    (set_meta("[1, 2]"), None, "is a JSON list, not an object"),
    (set_meta(7), None, "'meta' is of type int, not a JSON string"),
    (lambda payload: payload.update(format_version="1"), None, "with a whole version number"),
    (lambda payload: payload.update(norm_mean=torch.zeros(2, 2)), None, "'norm_mean' is not a one-dimensional"),
    (lambda payload: payload.update(model=[1, 2]), None, "'model' is not a dictionary of named tensors"),
    (None, lambda meta: meta.update(cell=[]), "'cell' is of type list, not dict"),
    (None, lambda meta: meta["cell"].update(input_segments="1,2"), "'input_segments' is of type str"),
    (None, lambda meta: meta.update(family="lstm"), "family 'lstm', which this version"),
    (None, lambda meta: meta["model_config"].update(depth=3), r"fields \['depth'\] that the mh family does not have"),
    (None, lambda meta: meta["model_config"].update(window="100"), "'window' is '100', not of type int"),
    (None, lambda meta: meta["model_config"].update(channels=["4", 2]), "'channels'"),
    (None, lambda meta: meta["model_config"].update(channels=[-4, 2]), "does not describe a valid mh model"),
    (None, lambda meta: meta["model_config"].update(channels=[8, 2]), "do not fit its mh architecture"),
])
def test_malformed_checkpoints_give_one_checkpoint_error(tiny, tmp_path, change, meta_change, message):
    path = altered(tiny, tmp_path, change, meta_change)
    with pytest.raises(CheckpointError, match=message) as error:
        load_checkpoint(path)
    assert str(path) in str(error.value)


def test_a_payload_that_is_not_a_dictionary_is_refused(tmp_path):
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(CheckpointError, match="holds a Tensor, not a checkpoint dictionary"):
        load_checkpoint(tmp_path / "tensor.pt")


def test_a_hostile_model_config_is_refused_before_allocating(tiny, tmp_path):
    """Channels of 400000: the first convolution alone would need 400000^2 x 3 floats (1.9 TB)."""
    path = altered(tiny, tmp_path, None,
                   lambda meta: meta["model_config"].update(channels=[400_000, 400_000], tower_hidden=[400_000, 4]))
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError, match="describes a mh model larger than .* stored weights"):
        load_checkpoint(path)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mib < 300


# ------------------------------------------------------------------ SurrogateCell input


@pytest.fixture(scope="module")
def cell_checkpoint(tmp_path_factory):
    """A random-weight tiny MH checkpoint of the default cell (builds its NEURON geometry)."""
    from surrogate_cell.cells import l5pc
    from surrogate_cell.cells.layout import SYNAPSE_SECTION_TYPES, cell_layout
    from surrogate_cell.checkpoint import save_untrained_checkpoint

    path = tmp_path_factory.mktemp("cell") / "random.pt"
    save_untrained_checkpoint(path, cell_layout(l5pc(), SYNAPSE_SECTION_TYPES))
    return path


def surrogate_cell(checkpoint, **kwargs):
    from surrogate_cell.cell import SurrogateCell

    return SurrogateCell(model=checkpoint, device="cpu", **{"dt": 1.0, **kwargs})


def attach(cell, times, segment_number=5):
    import LFPy

    synapse = LFPy.Synapse(cell, idx=int(cell.input_segments[segment_number]), syntype="AMPANMDA", weight=1.0)
    synapse.set_spike_times(np.asarray(times, dtype=float))
    return synapse


@pytest.mark.neuron
def test_input_events_of_a_long_run_take_memory_of_the_events_not_of_tstop(cell_checkpoint):
    """tstop = 10^6 ms: a dense input would be 1284 channels x 10^6 steps (1.2 GiB as uint8, 9.6 as int64)."""
    import tracemalloc

    cell = surrogate_cell(cell_checkpoint, tstop=1e6)
    tracemalloc.start()
    try:
        events = cell.input_events()
        without_synapses = tracemalloc.get_traced_memory()[1]
        attach(cell, np.arange(1000) * 997.0 + 0.5)
        tracemalloc.reset_peak()
        with_synapse = cell.input_events()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert events.shape == (cell.n_event_channels, 1_000_000) and events.nbytes == 0
    assert without_synapses < 1 << 20
    assert with_synapse.n_events == 1000 and with_synapse.nbytes <= 16 * 1000 and peak < 1 << 20
    block = with_synapse.block(997 * 3, 997 * 3 + 2)
    assert block.shape == (2, cell.n_event_channels) and block.sum() == 1


@pytest.mark.neuron
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_spike_times_that_are_not_finite_name_their_synapse(cell_checkpoint, bad):
    from surrogate_cell.cell import SynapseMappingError

    cell = surrogate_cell(cell_checkpoint, tstop=20.0)
    attach(cell, [1.0])
    attach(cell, [2.0, bad])
    with pytest.raises(SynapseMappingError, match="Synapse 1 has spike times that are NaN or infinite"):
        cell.simulate()


@pytest.mark.neuron
def test_histories_outside_the_physiological_range_or_not_binary_are_refused(cell_checkpoint):
    cell = surrogate_cell(cell_checkpoint, tstop=5.0)
    history = np.full((cell.totnsegs, cell.window_ms), -70.0)
    history[3, -1] = 1e4
    with pytest.raises(ValueError, match=r"history_mv holds voltages from -70 to 1e\+04 mV, outside the physiolog"):
        cell.simulate(history_mv=history)
    with pytest.raises(ValueError, match="outside the physiological range"):
        cell.simulate(history_mv=np.full((cell.totnsegs, cell.window_ms), -200.0))
    events = np.zeros((cell.n_event_channels, cell.window_ms))
    events[0, -1] = 2.0
    with pytest.raises(ValueError, match="history_events must hold binary events"):
        cell.simulate(history_events=events)
    cell.simulate(history_mv=history.clip(max=30.0), history_events=events.clip(max=1.0))  # in range: runs


@pytest.mark.neuron
def test_recorded_outputs_need_one_array_of_segments_by_steps(cell_checkpoint):
    """numpy memory of a 300 ms run (tracemalloc sees numpy, not torch): one float64 segments x steps
    array of model voltages, plus one more for each recording asked for (vmem here), plus the start
    history (and interpolation blocks); no copies of them, no imem nobody asked for."""
    import tracemalloc

    from surrogate_cell.cell import INTERPOLATION_BLOCK_ELEMENTS

    n_steps = 300
    cell = surrogate_cell(cell_checkpoint, tstop=float(n_steps))
    attach(cell, [10.0, 50.0])
    one_array = cell.totnsegs * (n_steps + 1) * 8
    history = cell.totnsegs * cell.window_ms * 8 + cell.n_event_channels * cell.window_ms  # float64, uint8
    temporaries = 4 * INTERPOLATION_BLOCK_ELEMENTS * 8 + one_array / 10
    for recording, arrays in (({}, 1), ({"rec_vmem": True}, 2)):
        tracemalloc.start()
        try:
            cell.simulate(**recording)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < arrays * one_array + history + temporaries, (recording, peak / one_array)
