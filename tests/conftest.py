"""Shared test fixtures: reference morphologies (skipped cleanly when ../shared is absent)."""

import importlib.util
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
HAY_MORPHOLOGY = REPO_ROOT.parent / "shared" / "reference" / "morphologies" / "cell1.asc"

requires_hay_morphology = pytest.mark.skipif(
    not HAY_MORPHOLOGY.is_file(), reason=f"reference morphology {HAY_MORPHOLOGY} not present"
)

MORPHOLOGIES = [
    pytest.param(None, id="default"),
    pytest.param(str(HAY_MORPHOLOGY), id="hay_cell1", marks=requires_hay_morphology),
]



def load_example(name: str):
    """The script ``examples/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# NEURON and torch share two cores here; one torch thread avoids oversubscription stalls.
torch.set_num_threads(1)


TINY_DRIVE_MODEL = ("family: srm\ntaus: [1, 4, 16]\nhidden: 16\nmlp_layers: 1\nspike_hidden: 8\ndropout: 0.0\n"
                    "window: 50\n")


@pytest.fixture(scope="session")
def tiny_drive_checkpoint(tmp_path_factory) -> Path:
    """A drive checkpoint (``input_kind == "drive"``) of a tiny SRM trained 30 steps on three 300 ms
    NEURON simulations of the mixture data; built once per test session (about 40 s)."""
    from surrogate_cell.data.generate import generate
    from surrogate_cell.training.__main__ import main as training_main

    root = tmp_path_factory.mktemp("tiny_drive_checkpoint")
    data = root / "mix.h5"
    generate(data, 3, 300, seed=7, config="data/mixture.yaml", progress=False, engine="neuron")
    (root / "srm_tiny.yaml").write_text(TINY_DRIVE_MODEL)
    (root / "train.yaml").write_text(
        f"model: {root / 'srm_tiny.yaml'}\nout_dir: {root / 'run'}\nbatch_size: 16\nmax_steps: 30\neval_every: 10\n"
        "val_windows: 64\nvalidation_fraction: 0.34\ntest_fraction: 0.0\ndevice: cpu\nseed: 3\n")
    assert training_main(["train", "--config", str(root / "train.yaml"), "--data", str(data), "--no-progress"]) == 0
    checkpoint = root / "run" / "best.pt"
    assert checkpoint.is_file()
    return checkpoint
