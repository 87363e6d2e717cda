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
