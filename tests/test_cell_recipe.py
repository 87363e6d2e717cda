"""A user's own NEURON cell through a recipe file: simulate, train, ship and run it in ``SurrogateCell``.

The cells are the small ones that ship inside the LFPy package (``LFPy/test``) and the project's
basket-cell recipe; every check compares against the cell LFPy builds from the same files.
"""

import shutil
from pathlib import Path

import LFPy
import numpy as np
import pytest

from surrogate_cell.cells.build import build_source_cell, build_stored_cell
from surrogate_cell.cells.layout import cell_layout
from surrogate_cell.cells.recipe import CellRecipeError
from surrogate_cell.mechanisms import MechanismError

LFPY_TEST_CELLS = Path(LFPy.__file__).resolve().parent / "test"
ALL_TYPES = ("soma", "axon", "basal", "apical", "oblique", "other")

pytestmark = pytest.mark.neuron

RECIPE = """\
name: ball_and_sticks
morphology: ball_and_sticks.hoc
cell_kwargs: {{passive: true, passive_parameters: {{g_pas: 1.0e-4, e_pas: -65.0}}, Ra: 150.0, cm: 1.0,
              nsegs_method: lambda_f, lambda_f: 100, v_init: -65.0, celsius: 34.0}}
synapse_sections: "dend"
simulation:
  dt: 0.025
  warmup_ms: 50
  v_init: -65.0
  celsius: 34.0
  synapse_section_types: [soma, basal]
  spike_threshold_mv: -20.0
  inputs: {{regime: poisson, exc_rate_hz: {rate}, inh_rate_hz: 20.0}}
"""

TINY_SRM = "family: srm\ntaus: [2, 8, 32]\nhidden: 16\nmlp_layers: 1\nspike_hidden: 8\ndropout: 0.0\nwindow: 50\n"


def _user_folder(root: Path, rate: float = 60.0) -> Path:
    """A user's folder: LFPy's ball-and-sticks morphology and a recipe for it."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(LFPY_TEST_CELLS / "ball_and_sticks.hoc", root)
    (root / "cell.yaml").write_text(RECIPE.format(rate=rate))
    return root / "cell.yaml"


def _geometry(cell) -> dict:
    return {"x": cell.x.copy(), "y": cell.y.copy(), "z": cell.z.copy(), "d": cell.d.copy(),
            "area": cell.area.copy(), "imem": cell.get_transformation_matrix_vmem_to_imem()}


def _assert_same_geometry(built: dict, rebuilt) -> None:
    for name, values in built.items():
        other = rebuilt.get_transformation_matrix_vmem_to_imem() if name == "imem" else getattr(rebuilt, name)
        np.testing.assert_allclose(other, values, rtol=1e-6, atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_users_cell_simulates_trains_ships_and_runs_without_its_files(tmp_path):
    from surrogate_cell import SurrogateCell
    from surrogate_cell.training.__main__ import main

    recipe = _user_folder(tmp_path / "user")
    data, run, shipped = tmp_path / "cell.h5", tmp_path / "run", tmp_path / "shipped"
    (tmp_path / "srm.yaml").write_text(TINY_SRM)
    assert main(["simulate", "--cell", str(recipe), "--out", str(data), "--n-sims", "4", "--duration-ms", "300",
                 "--seed", "5", "--no-progress"]) == 0
    assert main(["train", "--data", str(data), "--model", str(tmp_path / "srm.yaml"), "--out-dir", str(run),
                 "--max-steps", "10", "--batch-size", "8", "--device", "cpu", "--no-progress"]) == 0
    assert main(["ship", "--checkpoint", str(run / "best.pt"), "--name", "my-cell", "--run-dir", str(run),
                 "--out-dir", str(shipped)]) == 0
    assert "cell recipe `ball_and_sticks`" in (shipped / "my-cell.md").read_text()

    reference = build_source_cell(recipe, tstop=100.0)
    expected = _geometry(reference)
    input_segments = cell_layout(reference, ("soma", "basal")).input_segments
    del reference
    shutil.rmtree(tmp_path / "user")  # the surrogate needs none of the user's files

    cell = SurrogateCell(model=shipped / "my-cell.pt", tstop=100.0)
    _assert_same_geometry(expected, cell)
    np.testing.assert_array_equal(cell.input_segments, input_segments)
    electrode = LFPy.RecExtElectrode(cell, x=np.array([60.0]), y=np.zeros(1), z=np.array([80.0]), sigma=0.3)
    synapse = LFPy.Synapse(cell, idx=int(input_segments[0]), syntype="AMPANMDA", weight=1.0)
    synapse.set_spike_times(np.array([20.0, 50.0]))
    cell.simulate(probes=[electrode], rec_imem=True)
    assert np.isfinite(cell.somav).all() and cell.somav.shape == cell.tvec.shape
    np.testing.assert_allclose(electrode.data, electrode.get_transformation_matrix() @ cell.imem, atol=1e-12)


def test_template_cell_geometry_is_embedded_without_template_prefixes(tmp_path):
    shutil.copy(LFPY_TEST_CELLS / "ball_and_sticks_w_lists.hoc", tmp_path)
    shutil.copy(LFPY_TEST_CELLS / "ball_and_stick_template.hoc", tmp_path)
    (tmp_path / "cell.yaml").write_text(
        "name: templated\nmorphology: ball_and_sticks_w_lists.hoc\n"
        "template: {templatefile: ball_and_stick_template.hoc, templatename: ball_and_stick_template}\n"
        "cell_kwargs: {passive: true, nsegs_method: lambda_f, lambda_f: 50}\nsynapse_sections: dend\n")
    cell = build_source_cell(tmp_path / "cell.yaml")
    assert any("ball_and_stick_template" in sec.name() for sec in cell.allseclist)
    layout_hash = cell_layout(cell, ALL_TYPES).segment_hash
    expected, recipe = _geometry(cell), cell.recipe
    del cell
    rebuilt = build_stored_cell(recipe, {})
    _assert_same_geometry(expected, rebuilt)
    assert cell_layout(rebuilt, ALL_TYPES).segment_hash == layout_hash


def test_python_builder_recipe(tmp_path):
    shutil.copy(LFPY_TEST_CELLS / "ball_and_sticks.hoc", tmp_path)
    (tmp_path / "my_builder.py").write_text(
        "import LFPy\n\ndef build(morphology, **kwargs):\n"
        "    return LFPy.Cell(morphology=morphology, passive=True, **kwargs)\n")
    (tmp_path / "cell.yaml").write_text("morphology: ball_and_sticks.hoc\nbuilder: my_builder:build\n"
                                        "cell_kwargs: {nsegs_method: fixed_length, max_nsegs_length: 50}\n"
                                        "synapse_sections: 'soma|dend'\n")
    cell = build_source_cell(tmp_path / "cell.yaml")
    assert cell.totnsegs > 1 and cell.synapse_mask.all()
    assert cell.recipe["name"] == "cell"


def test_basket_recipe_with_its_own_mechanisms_rebuilds_from_the_checkpoint_geometry():
    cell = build_source_cell("cells/basket/basket.yaml")
    assert {"wbNa", "wbKdr"} <= {name for sec in cell.allseclist for name in sec.psection()["density_mechs"]}
    layout = cell_layout(cell, ("soma", "basal"))
    assert layout.input_segments.size == cell.totnsegs
    expected, recipe = _geometry(cell), cell.recipe
    del cell
    rebuilt = build_stored_cell(recipe, {})
    _assert_same_geometry(expected, rebuilt)
    assert cell_layout(rebuilt, ("soma", "basal")).segment_hash == layout.segment_hash
    assert not any(sec.psection()["density_mechs"].keys() - {"pas"} for sec in rebuilt.allseclist)


@pytest.mark.parametrize("edit, message", [
    ({"morphology": "missing.swc"}, "morphology .*missing.swc does not exist"),
    ({"mechanisms": "no_such_folder"}, "mechanisms folder .*no_such_folder does not exist"),
    ({"colour": "red"}, "unknown recipe field.*colour"),
    ({"builder": "not a builder"}, "builder must be 'module:function'"),
    ({"synapse_sections": "apic"}, "no section matches synapse_sections 'apic'.*dend"),
    ({"cell_kwargs": {"custom_code": ["gone.hoc"]}}, "custom_code .*gone.hoc does not exist"),
])
def test_bad_recipes_get_one_clear_error(tmp_path, edit, message):
    import yaml

    recipe = _user_folder(tmp_path)
    values = {**yaml.safe_load(recipe.read_text()), **edit}
    recipe.write_text(yaml.safe_dump(values))
    with pytest.raises(CellRecipeError, match=message):
        build_source_cell(recipe)


@pytest.mark.slow
def test_mechanisms_that_do_not_compile_name_the_folder_and_nrnivmodls_message(tmp_path):
    folder = tmp_path / "mods"
    folder.mkdir()
    (folder / "broken.mod").write_text("NEURON { SUFFIX brokenchan }\nBREAKPOINT { nonsense here }\n")
    recipe = _user_folder(tmp_path)
    recipe.write_text(recipe.read_text() + "mechanisms: mods\n")
    with pytest.raises(MechanismError, match=r"(?s)nrnivmodl failed to compile the .mod files of .*mods"):
        build_source_cell(recipe)


def test_simulate_command_reports_a_bad_recipe_and_exits_nonzero(tmp_path, capsys):
    from surrogate_cell.training.__main__ import main

    recipe = _user_folder(tmp_path)
    recipe.write_text(recipe.read_text().replace("ball_and_sticks.hoc", "gone.hoc"))
    assert main(["simulate", "--cell", str(recipe), "--out", str(tmp_path / "x.h5"), "--n-sims", "1",
                 "--duration-ms", "10", "--no-progress"]) == 1
    assert "gone.hoc does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()
