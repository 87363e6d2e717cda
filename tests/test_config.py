"""Config files: packaged names, paths relative to the naming file, one reader with one unknown-key error."""

from __future__ import annotations

import pytest

from surrogate_cell.cells.recipe import load_recipe
from surrogate_cell.config import (
    PACKAGED_CONFIGS,
    ConfigFileError,
    check_keys,
    packaged_config_names,
    read_mapping,
    resolve_config,
    resolve_reference,
)
from surrogate_cell.data.simulation import ConfigError, load_simulation_config, simulation_config_from_dict
from surrogate_cell.models import load_model_config
from surrogate_cell.training.train import load_train_config


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """An empty working directory outside the source tree."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def test_a_config_is_an_existing_path_or_a_packaged_name(elsewhere):
    assert resolve_config("train_small.yaml") == PACKAGED_CONFIGS / "train_small.yaml"
    assert resolve_config("models/srm.yaml") == PACKAGED_CONFIGS / "models" / "srm.yaml"
    assert resolve_config("training/data/poisson.yaml") == PACKAGED_CONFIGS / "data" / "poisson.yaml"
    (elsewhere / "train_small.yaml").write_text("lr: 0.1\n")
    assert resolve_config("train_small.yaml").resolve() == elsewhere / "train_small.yaml"


def test_a_missing_config_names_what_was_tried_and_the_packaged_configs(elsewhere):
    with pytest.raises(ConfigFileError, match=r"'train_tiny.yaml' not found .*train_small.yaml"):
        resolve_config("train_tiny.yaml")


def test_a_config_names_other_configs_relative_to_itself(elsewhere, tmp_path):
    folder = tmp_path / "mine"
    (folder / "models").mkdir(parents=True)
    (folder / "models" / "tiny.yaml").write_text("family: mh\nchannels: [4]\n")
    config_file = folder / "train.yaml"
    assert resolve_reference("models/tiny.yaml", config_file) == folder / "models" / "tiny.yaml"
    assert resolve_reference("models/srm.yaml", config_file) == PACKAGED_CONFIGS / "models" / "srm.yaml"
    (elsewhere / "models").mkdir()
    (elsewhere / "models" / "mine.yaml").write_text("family: mh\n")
    with pytest.raises(ConfigFileError, match="not found"):  # never the working directory
        resolve_reference("models/mine.yaml", config_file)


def test_a_training_config_finds_its_model_from_any_directory(elsewhere, tmp_path):
    packaged = load_train_config("train_small.yaml", data="x.h5")
    assert packaged.model == str(PACKAGED_CONFIGS / "models" / "mmoe_small.yaml")
    assert load_model_config(packaged.model)[0] == "mmoe"
    folder = tmp_path / "mine"
    (folder / "models").mkdir(parents=True)
    (folder / "models" / "tiny.yaml").write_text("family: mh\nchannels: [4]\n")
    (folder / "train.yaml").write_text("model: models/tiny.yaml\nout_dir: runs/tiny\n")
    mine = load_train_config(folder / "train.yaml")
    assert load_model_config(mine.model) == ("mh", {"channels": [4]})
    assert mine.out_dir == "runs/tiny"  # outputs stay relative to the working directory
    assert load_train_config("train_small.yaml", model="models/mh_small.yaml").model == "models/mh_small.yaml"


def test_every_packaged_config_loads(elsewhere):
    names = packaged_config_names()
    assert {"train_default.yaml", "models/srm.yaml", "data/default.yaml"} <= set(names)
    for name in names:
        if name.startswith("models/"):
            load_model_config(name)
        elif name.startswith("data/"):
            load_simulation_config(name)
        elif name.startswith("cells/"):
            recipe = load_recipe(name)
            if recipe.simulation is not None:
                simulation_config_from_dict(recipe.simulation, name)
        else:
            load_model_config(load_train_config(name).model)


def test_unknown_keys_name_the_file_the_valid_keys_and_a_close_match():
    with pytest.raises(ConfigFileError, match=r"unknown key\(s\) \['lrr'\] in my.yaml; valid keys: "
                                              r"\['lr', 'seed'\] \(did you mean 'lr' for 'lrr'\?\)"):
        check_keys({"lrr": 1, "seed": 0}, ["lr", "seed"], "my.yaml")


@pytest.mark.parametrize("load, error", [
    (load_train_config, ValueError), (load_model_config, ValueError),
    (load_simulation_config, ConfigError),
])
def test_every_loader_rejects_unknown_keys_naming_the_file(tmp_path, load, error):
    path = tmp_path / "bad.yaml"
    path.write_text("family: mh\nregime: published\nnot_a_field: 1\n")
    with pytest.raises(error, match=r"unknown (key|field)\(s\) .*'not_a_field'.* in .*bad.yaml|bad.yaml.*not_a_field"):
        load(path)


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigFileError, match="list.yaml must hold a mapping"):
        read_mapping(path)
    path.write_text("a: [1, 2\n")
    with pytest.raises(ConfigFileError, match="list.yaml is not valid YAML"):
        read_mapping(path)
