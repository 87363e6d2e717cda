"""The runtime (cells, models, engine, SurrogateCell, networks) stands apart from training and data generation."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import surrogate_cell

PACKAGE = Path(surrogate_cell.__file__).parent
NOT_RUNTIME = ("surrogate_cell.training", "surrogate_cell.data", "surrogate_cell.datasets")
"""Packages the runtime must never import: training, data generation and training datasets."""
RUNTIME_PACKAGES = ("cells", "models", "engine", "network", "pretrained")


def runtime_files() -> list[Path]:
    """Every source file of the runtime: the runtime packages and the package's top-level modules."""
    files = [path for name in RUNTIME_PACKAGES for path in (PACKAGE / name).rglob("*.py")]
    return files + [path for path in PACKAGE.glob("*.py") if path.name != "__main__.py"]


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports, anywhere in the file (also inside functions)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[:len(package.split(".")) - node.level + 1], base]).rstrip(".")
            names.add(base)
    return names


@pytest.mark.parametrize("path", runtime_files(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_runtime_modules_import_no_training_or_data_generation(path):
    offending = sorted(name for name in imported_modules(path) if name.startswith(NOT_RUNTIME))
    assert not offending, f"{path.relative_to(PACKAGE)} imports {offending}"


SIMULATE = """
import sys
import LFPy
import numpy as np
from surrogate_cell import SurrogateCell
cell = SurrogateCell(model="l5pc-default", tstop=20.0)
synapse = LFPy.Synapse(cell, idx=int(cell.input_segments[0]), syntype="AMPANMDA", weight=1.0)
synapse.set_spike_times(np.array([5.0]))
electrode = LFPy.RecExtElectrode(cell, x=np.array([50.0]), y=np.zeros(1), z=np.zeros(1))
cell.simulate(probes=[electrode], rec_vmem=True)
loaded = sorted(name for name in sys.modules if name.startswith({not_runtime!r}))
print("LOADED", loaded)
"""


@pytest.mark.neuron
def test_simulating_a_surrogate_cell_loads_no_training_or_data_generation_module():
    result = subprocess.run([sys.executable, "-c", SIMULATE.format(not_runtime=NOT_RUNTIME)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "LOADED []" in result.stdout, result.stdout[-2000:]
