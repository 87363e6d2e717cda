"""Bad input gets one clear error, and nothing the user has is lost (issue "House in order").

Every case uses real files: a tiny NEURON data set (four 250 ms simulations), copies of it
damaged in one way each, and checkpoints of a few training steps.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from surrogate_cell.checkpoint import CheckpointError, read_checkpoint
from surrogate_cell.data import store
from surrogate_cell.data.generate import generate
from surrogate_cell.data.simulation import SimulationConfig
from surrogate_cell.data.store import DataSetError, open_data_set
from surrogate_cell.datasets.windows import split_simulations
from surrogate_cell.training.__main__ import main
from surrogate_cell.training.train import MetricsLog, TrainConfig, Trainer

SHORT = SimulationConfig(warmup_ms=50)
TINY_MH = "family: mh\nchannels: [4, 2, 2]\ntower_hidden: [4]\ndropout: 0.0\nkernel_size: 3\n"
TINY_SRM = "family: srm\ntaus: [2]\nhidden: 4\nmlp_layers: 1\nspike_hidden: 2\ndropout: 0.0\n"


@pytest.fixture(scope="module")
def data_set(tmp_path_factory):
    """Four 250 ms simulations of the built-in cell (50 ms warm-up)."""
    path = tmp_path_factory.mktemp("bad_input") / "tiny.h5"
    generate(path, 4, 250, seed=21, config=SHORT, progress=False)
    return path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "tiny_mh.yaml"
    path.write_text(TINY_MH)
    return path


def config(data, model_file, out_dir, **changes) -> TrainConfig:
    fields = dict(data=str(data), out_dir=str(out_dir), model=str(model_file), batch_size=8,
                  max_steps=10, eval_every=10, val_windows=32, validation_fraction=0.25,
                  test_fraction=0.25, device="cpu", seed=3)
    return TrainConfig(**{**fields, **changes})


@pytest.fixture(scope="module")
def trained(data_set, model_file, tmp_path_factory):
    """A run folder with best.pt and last.pt of ten steps of a tiny MH."""
    out_dir = tmp_path_factory.mktemp("trained")
    Trainer(config(data_set, model_file, out_dir), progress_bar=False).run()
    return out_dir


def copy_of(path, folder, name="copy.h5"):
    target = folder / name
    shutil.copyfile(path, target)
    return target


def cli(*args) -> int:
    return main([str(arg) for arg in args])


@contextlib.contextmanager
def read_only(path):
    """``path`` (file or folder) read-only for this process, even for root (immutable flag)."""
    mode = path.stat().st_mode
    path.chmod(0o555 if path.is_dir() else 0o444)
    immutable = os.geteuid() == 0
    if immutable and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        path.chmod(mode)
        pytest.skip("running as root and chattr +i is not available here")
    try:
        yield path
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(mode)


# --------------------------------------------------------------------------- resume after more data


@pytest.mark.slow
@pytest.mark.neuron
def test_resume_after_the_data_set_grew_keeps_the_split_and_the_normalisation(data_set, model_file, tmp_path,
                                                                             capsys):
    grown, out_dir = copy_of(data_set, tmp_path), tmp_path / "run"
    Trainer(config(grown, model_file, out_dir), progress_bar=False).run()
    saved = read_checkpoint(out_dir / "last.pt")
    generate(grown, 5, 250, config=SHORT, progress=False)  # simulate rerun with a larger --n-sims
    assert split_simulations(range(5), 0.25, 0.25, 3)[0] != saved["meta"]["data"]["train"]  # a re-split differs

    resumed = Trainer(config(grown, model_file, out_dir, max_steps=20), progress_bar=False)
    note = capsys.readouterr().err
    assert "has 1 simulation(s) the run" in note and "[4]" in note and "leaves them out" in note
    assert resumed.progress.step == 10
    assert resumed.data.train.sim_indices == saved["meta"]["data"]["train"]
    assert resumed.data.validation.sim_indices == saved["meta"]["data"]["validation"]
    np.testing.assert_array_equal(resumed.data.normalisation.mean, saved["norm_mean"].numpy())
    np.testing.assert_array_equal(resumed.data.normalisation.std, saved["norm_std"].numpy())
    resumed.run()
    after = read_checkpoint(out_dir / "last.pt")["meta"]["data"]
    assert [after[k] for k in ("train", "validation", "test")] == \
        [saved["meta"]["data"][k] for k in ("train", "validation", "test")]

    with h5py.File(grown, "a") as h5:  # a simulation the run trained on disappears
        del h5["sims"][f"{saved['meta']['data']['train'][0]:06d}"]
    with pytest.raises(CheckpointError, match="no longer holds"):
        Trainer(config(grown, model_file, out_dir, max_steps=30), progress_bar=False)


# --------------------------------------------------------------------------- data set access


@pytest.mark.slow
@pytest.mark.neuron
def test_a_read_only_data_set_is_reported_as_read_only_and_stays_intact(data_set, tmp_path):
    path = copy_of(data_set, tmp_path)
    with read_only(path):
        assert len(open_data_set(path)) == 4  # reading is fine
        with pytest.raises(DataSetError, match="permission denied writing") as caught:
            generate(path, 5, 250, config=SHORT, progress=False)
    assert "corrupt" not in str(caught.value) and f"chmod u+w {path}" in str(caught.value)
    assert len(open_data_set(path)) == 4


@pytest.mark.slow
@pytest.mark.neuron
@pytest.mark.skipif(os.environ.get("HDF5_USE_FILE_LOCKING", "").upper() == "FALSE",
                    reason="HDF5 file locking is switched off")
def test_a_data_set_held_open_by_another_process_is_reported_as_locked(data_set, tmp_path, monkeypatch):
    path = copy_of(data_set, tmp_path)
    monkeypatch.setattr(store, "LOCK_WAIT_S", 0.5)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, h5py; f = h5py.File(sys.argv[1], 'a'); print('open', flush=True); "
                               "sys.stdin.read()", str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(DataSetError, match="held open by another process") as caught:
            open_data_set(path)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert "corrupt" not in str(caught.value)
    assert len(open_data_set(path)) == 4


@pytest.mark.slow
@pytest.mark.neuron
def test_a_damaged_file_is_called_corrupt_and_deleting_it_is_said_to_lose_it(data_set, tmp_path):
    path = copy_of(data_set, tmp_path)
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)
    with pytest.raises(DataSetError, match=r"truncated or corrupt\?.*deletes it and every simulation in it"):
        open_data_set(path)


# --------------------------------------------------------------------------- one clear error, not a traceback


@pytest.mark.slow
@pytest.mark.neuron
def test_a_file_without_the_cell_group_gives_one_clear_error(data_set, model_file, trained, tmp_path, capsys):
    srm_file = tmp_path / "srm.yaml"
    srm_file.write_text(TINY_SRM)
    assert cli("train", "--data", data_set, "--model", srm_file, "--out-dir", tmp_path / "srm",
               "--max-steps", 2, "--batch-size", 4, "--no-progress") == 0
    broken = copy_of(data_set, tmp_path)
    with h5py.File(broken, "a") as h5:
        del h5["cell"]
    capsys.readouterr()
    for args in (("train", "--data", broken, "--model", model_file, "--out-dir", tmp_path / "run", "--no-progress"),
                 ("evaluate", "--checkpoint", trained / "best.pt", "--data", broken, "--out-dir", tmp_path / "ev"),
                 ("calibrate", "--checkpoint", tmp_path / "srm" / "best.pt", "--data", broken)):
        assert cli(*args) == 1, args[0]
        error = capsys.readouterr().err
        assert f"{broken} has no /cell group" in error and "simulate" in error, args[0]


@pytest.mark.slow
@pytest.mark.neuron
def test_data_shorter_than_the_model_window_gives_one_clear_error(model_file, trained, tmp_path, capsys):
    short = tmp_path / "short.h5"
    generate(short, 1, 60, seed=5, config=SHORT, progress=False)
    for args in (("train", "--data", short, "--model", model_file, "--out-dir", tmp_path / "run", "--no-progress"),
                 ("evaluate", "--checkpoint", trained / "best.pt", "--data", short, "--out-dir", tmp_path / "ev")):
        assert cli(*args) == 1, args[0]
        error = capsys.readouterr().err
        assert f"{short} holds 60 ms simulations, too short" in error and "--duration-ms 101" in error, args[0]


@pytest.mark.slow
@pytest.mark.neuron
def test_outputs_below_a_file_or_in_a_read_only_folder_give_one_clear_error(data_set, model_file, trained,
                                                                         tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    locked = tmp_path / "read_only"
    locked.mkdir()
    commands = {
        "simulate": lambda parent: ("simulate", "--out", parent / "new.h5", "--n-sims", 1, "--duration-ms", 10,
                                    "--no-progress"),
        "ship": lambda parent: ("ship", "--checkpoint", trained / "best.pt", "--name", "x", "--out-dir",
                                parent / "shipped"),
        "ensemble": lambda parent: ("ensemble", "--checkpoint", trained / "best.pt", "--checkpoint",
                                    trained / "last.pt", "--out", parent / "ensemble.pt"),
        "train": lambda parent: ("train", "--data", data_set, "--model", model_file, "--out-dir", parent / "run",
                                 "--no-progress"),
    }
    with read_only(locked):
        for name, arguments in commands.items():
            assert cli(*arguments(a_file)) == 1, name
            assert f"{a_file} is a file, not a folder" in capsys.readouterr().err, name
            assert cli(*arguments(locked)) == 1, name
            error = capsys.readouterr().err
            assert f"permission denied writing in {locked}" in error and "chmod u+w" in error, name
        assert list(locked.iterdir()) == []
    assert a_file.read_text() == "keep me"


# --------------------------------------------------------------------------- non-finite numbers


@pytest.mark.slow
@pytest.mark.neuron
def test_nan_voltages_are_named_when_loading(data_set, model_file, trained, tmp_path, capsys):
    path = copy_of(data_set, tmp_path)
    with h5py.File(path, "a") as h5:
        for name in ("000001", "000002"):
            h5["sims"][name]["vmem"][3, 7] = np.nan
    assert cli("evaluate", "--checkpoint", trained / "best.pt", "--data", path, "--out-dir", tmp_path / "ev") == 1
    assert f"{path}: simulation(s) [1, 2] hold non-finite voltages" in capsys.readouterr().err
    out_dir = tmp_path / "run"
    assert cli("train", "--data", path, "--model", model_file, "--out-dir", out_dir, "--no-progress") == 1
    assert "non-finite voltages" in capsys.readouterr().err
    assert not out_dir.exists()  # nothing left behind


@pytest.mark.slow
@pytest.mark.neuron
def test_training_stops_with_an_error_when_the_loss_becomes_nan(data_set, model_file, trained, tmp_path, capsys):
    payload = torch.load(trained / "best.pt", weights_only=True)
    for tensor in payload["model"].values():
        if tensor.is_floating_point():
            tensor.fill_(float("nan"))
    torch.save(payload, tmp_path / "nan.pt")
    out_dir = tmp_path / "run"
    assert cli("train", "--data", data_set, "--model", model_file, "--out-dir", out_dir, "--init-from",
               tmp_path / "nan.pt", "--max-steps", 4, "--batch-size", 4, "--no-progress") == 1
    assert "the training loss became nan at step 1" in capsys.readouterr().err
    assert not (out_dir / "best.pt").exists()


# --------------------------------------------------------------------------- a kill during a save


@pytest.mark.slow
@pytest.mark.neuron
def test_a_kill_during_a_save_leaves_no_temporary_file_and_no_duplicate_metrics_row(data_set, model_file,
                                                                                     tmp_path):
    out_dir = tmp_path / "run"
    Trainer(config(data_set, model_file, out_dir), progress_bar=False).run()
    shutil.copyfile(out_dir / "last.pt", tmp_path / "last_10.pt")
    Trainer(config(data_set, model_file, out_dir, max_steps=20), progress_bar=False).run()
    # What a kill between the step-20 metrics row and the rename of last.pt leaves behind:
    shutil.copyfile(tmp_path / "last_10.pt", out_dir / "last.pt")
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
    stale = out_dir / f".last.pt.tmp{finished.stdout.strip()}"
    stale.write_bytes((out_dir / "last.pt").read_bytes()[:4096])

    resumed = Trainer(config(data_set, model_file, out_dir, max_steps=20), progress_bar=False)
    assert not stale.exists() and resumed.progress.step == 10
    resumed.run()
    steps = [line.split(",")[0] for line in (out_dir / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == ["10", "20"]
    assert read_checkpoint(out_dir / "last.pt")["meta"]["training"]["progress"]["step"] == 20
    assert not list(out_dir.glob(".*.tmp*"))


def test_the_metrics_log_keeps_one_row_per_step_and_sets_an_older_log_aside(tmp_path):
    path = tmp_path / "metrics.csv"
    header = ",".join(MetricsLog.FIELDS)
    path.write_text(f"{header}\n10,1,1,1,nan,1\n20,1,1,1,nan,2\n30,1,1")  # the last row torn by a kill
    MetricsLog(tmp_path, resumed_step=10)
    assert path.read_text().splitlines() == [header, "10,1,1,1,nan,1"]
    log = MetricsLog(tmp_path)  # a new run (no last.pt) in the same folder
    assert log.set_aside == tmp_path / "metrics.1.csv"
    assert log.set_aside.read_text().splitlines() == [header, "10,1,1,1,nan,1"]
    assert path.read_text().splitlines() == [header]


@pytest.mark.slow
@pytest.mark.neuron
def test_evaluating_a_checkpoint_with_nan_weights_fails_clearly(data_set, trained, tmp_path, capsys):
    payload = torch.load(trained / "best.pt", weights_only=True)
    payload["model"] = {name: torch.full_like(weight, float("nan")) if weight.is_floating_point() else weight
                        for name, weight in payload["model"].items()}
    broken = tmp_path / "nan.pt"
    torch.save(payload, broken)
    status = cli("evaluate", "--checkpoint", broken, "--data", data_set, "--out-dir", tmp_path / "eval",
                 "--no-figures")
    assert status != 0
    assert "NaN" in capsys.readouterr().err
    assert not (tmp_path / "eval" / "metrics.json").exists()
