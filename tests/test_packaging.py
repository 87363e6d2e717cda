"""The wheel installs and works outside the source tree: mechanisms, configs and the shipped model are package data.

Builds the wheel from a copy of the working tree (no network, no build isolation), installs it
without dependencies into a fresh virtual environment that sees this interpreter's packages
through a ``.pth`` file (nothing is downloaded), and from an empty working directory runs a
short ``SurrogateCell`` simulation with an LFPy electrode, compiling the mechanisms into a
temporary cache, and the training commands' help.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.neuron]

NOT_SOURCE = {".git", ".venv", ".scratch", "build", "dist", "data", "runs", ".pytest_cache", "compare_lfp_output",
              "x86_64", "aarch64", "arm64"}
"""Top-level entries of the working tree left out of the copy the wheel is built from."""

SIMULATE = """
import LFPy
import numpy as np
import surrogate_cell
from surrogate_cell import SurrogateCell

cell = SurrogateCell(model="l5pc-default", tstop=50.0, dt=0.5)
synapse = LFPy.Synapse(cell, idx=int(cell.input_segments[0]), syntype="AMPANMDA", weight=1.0)
synapse.set_spike_times(np.array([5.0, 20.0]))
electrode = LFPy.RecExtElectrode(cell, x=np.array([50.0, 50.0]), y=np.zeros(2), z=np.array([0.0, 500.0]))
cell.simulate(probes=[electrode], rec_vmem=True)
assert np.isfinite(electrode.data).all()
basket = SurrogateCell(model="basket-default", tstop=50.0)  # runs from its embedded geometry
basket.simulate(rec_vmem=True)
assert basket.totnsegs == 114 and np.isfinite(basket.vmem).all()
print("PACKAGE", surrogate_cell.__file__)
print("LFP_SHAPE", electrode.data.shape)
"""

CONFIGS = """
from surrogate_cell.models import load_model_config
from surrogate_cell.training.train import load_train_config

from surrogate_cell.cells.recipe import load_recipe

recipe = load_recipe("cells/basket/basket.yaml")  # the packaged recipe and every file it names
assert recipe.morphology.is_file() and sorted(p.name for p in recipe.mechanisms.glob("*.mod"))
config = load_train_config("train_small.yaml", data="unused.h5")
print("MODEL", config.model, load_model_config(config.model)[0])
"""


def run(command: list, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``command``; fail the test with its output when it fails."""
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def build_wheel(tmp_path: Path) -> Path:
    """The project's wheel, built from a copy of the working tree (the tree itself stays untouched)."""
    source = tmp_path / "source"
    build_outputs = shutil.ignore_patterns("__pycache__", "*.egg-info")

    def ignore(folder: str, names: list[str]) -> set[str]:
        top_level = NOT_SOURCE & set(names) if Path(folder) == REPO_ROOT else set()
        return top_level | build_outputs(folder, names)

    shutil.copytree(REPO_ROOT, source, ignore=ignore)
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", wheels, source], cwd=tmp_path)
    (wheel,) = wheels.glob("surrogate_cell-*.whl")
    return wheel


def installed_venv(tmp_path: Path, wheel: Path) -> Path:
    """A fresh virtual environment with ``wheel`` installed; returns its python.

    Its dependencies are this interpreter's packages, made visible by a ``.pth`` file; the
    wheel's own copy of surrogate_cell comes first on ``sys.path``.
    """
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel],
        cwd=tmp_path)
    venv_site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         cwd=tmp_path).stdout.strip())
    (venv_site / "outer_site_packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of the venv with the wheel installed, an empty working directory, the environment)."""
    tmp_path = tmp_path_factory.mktemp("packaging")
    python = installed_venv(tmp_path, build_wheel(tmp_path))
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "SURROGATE_CELL_MECHANISMS")}
    env.update(SURROGATE_CELL_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1",
               # nrnivmodl comes with NEURON, here in this interpreter's environment
               PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]))
    return python, workdir, env


def test_a_surrogate_cell_simulates_from_the_installed_wheel(installed):
    python, workdir, env = installed
    result = run([python, "-c", SIMULATE], cwd=workdir, env=env)
    package = Path(result.stdout.split("PACKAGE ")[1].split()[0])
    assert python.parent.parent in package.parents, f"surrogate_cell imported from {package}, not the wheel"
    assert "LFP_SHAPE (2, 101)" in result.stdout  # 0, 0.5, ..., 50 ms
    assert list((Path(env["SURROGATE_CELL_CACHE"]) / "mechanisms").glob("*/*/libnrnmech.so"))


def test_packaged_configs_resolve_from_any_directory(installed):
    python, workdir, env = installed
    result = run([python, "-c", CONFIGS], cwd=workdir, env=env)
    model_file = Path(result.stdout.split("MODEL ")[1].split()[0])
    assert python.parent.parent in model_file.parents and model_file.name == "mmoe_small.yaml"
    assert result.stdout.split()[-1] == "mmoe"


@pytest.mark.parametrize("command", ["simulate", "train"])
def test_training_commands_run_from_the_installed_wheel(installed, command):
    python, workdir, env = installed
    result = run([python, "-m", "surrogate_cell.training", command, "--help"], cwd=workdir, env=env)
    assert "--config" in result.stdout
