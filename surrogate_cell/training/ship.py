"""Package a trained checkpoint as a named model with a model card: ``python -m surrogate_cell.training ship``.

The shipped file keeps only what :class:`~surrogate_cell.SurrogateCell` needs (weights,
architecture, normalisation, cell identity, provenance), must stay under the package budget,
and gets a Markdown model card next to it built from the training log and the evaluation
results, plus a JSON file with the reference metrics the CI regression test checks.
"""

from __future__ import annotations

import csv
import json
import platform
from pathlib import Path

import torch

from surrogate_cell.checkpoint import REQUIRED_KEYS, CheckpointError, read_checkpoint
from surrogate_cell.models import get_family
from surrogate_cell.outputs import writable_folder
from surrogate_cell.pretrained import PRETRAINED_DIR

PACKAGE_BUDGET_BYTES = 25 * 1024 * 1024
def shipped_payload(checkpoint: str | Path) -> dict:
    """The checkpoint without training state, with data paths reduced to their file names
    (its own and, for an ensemble, every member's)."""
    payload = read_checkpoint(checkpoint)
    meta = payload["meta"]
    for record in (meta, *meta.get("ensemble", [])):
        strip_data_paths(record)
    kept = {key: payload[key] for key in (*REQUIRED_KEYS, "norm_low", "norm_high") if key != "meta" and key in payload}
    kept["model"] = compact_weights(kept["model"], meta["family"])
    return {**kept, "meta": json.dumps(meta, sort_keys=True)}


def strip_data_paths(record: dict) -> None:
    """Reduce the data set paths of a checkpoint's (or ensemble member's) metadata to file names, in place."""
    record["data"] = {**record["data"], "path": Path(record["data"].get("path", "")).name}
    for extra in record["data"].get("extra", []):
        extra["path"] = Path(extra["path"]).name
    config = record.get("training", {}).get("config", {})
    if config.get("data"):
        config["data"] = Path(config["data"]).name
    config["extra_data"] = [Path(path).name for path in config.get("extra_data", [])]


def compact_weights(state: dict, family: str) -> dict:
    """The state dict with the weights the family allows in half precision in float16."""
    names = get_family(family).float16_weights
    return {name: tensor.half() if name in names else tensor for name, tensor in state.items()}


def training_wall_time_s(run_dirs: list[Path]) -> float:
    """Sum of the last ``elapsed_s`` of each run's ``metrics.csv`` (one per training phase)."""
    total = 0.0
    for run_dir in run_dirs:
        with (Path(run_dir) / "metrics.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        if rows:
            total += float(rows[-1]["elapsed_s"])
    return total


def hardware_description() -> str:
    """CPU/GPU, core count and torch version of this machine."""
    import os

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only"
    return (f"{platform.machine()} {platform.processor() or 'CPU'}, {os.cpu_count()} cores, "
            f"{device}, torch {torch.__version__}, Python {platform.python_version()}")


def _rmse_row(label: str, values: dict) -> str:
    order = ("all", "soma", "axon", "basal", "oblique", "apical")
    return f"| {label} | " + " | ".join(f"{values[k]:.2f}" if k in values else "–" for k in order) + " |"


def evaluation_section(title: str, metrics: dict) -> list[str]:
    """Markdown lines for one ``evaluate`` metrics.json."""
    spikes = metrics["spikes"]
    diverged = metrics.get("free_running_diverged_at_ms")
    lines = [f"### {title}", "",
             f"{len(metrics['simulations'])} held-out simulations, free run {metrics['free_running_ms']} ms"
             + (f" (diverged after {diverged} ms)" if diverged is not None else " (ran to the end)") + ".", "",
             "| RMSE (mV) | all | soma | axon | basal | oblique | apical |",
             "|---|---|---|---|---|---|---|",
             _rmse_row("teacher-forced", metrics["teacher_forced_rmse_mv"]),
             _rmse_row("free-running", metrics["free_running_rmse_mv"]), "",
             f"Somatic spikes, free-running (±3 ms, threshold {spikes['threshold_mv']:g} mV): "
             f"precision {spikes['precision']:.2f}, recall {spikes['recall']:.2f}, F1 {spikes['f1']:.2f} "
             f"({spikes['n_true']} true, {spikes['n_predicted']} predicted). "
             f"Spike-task AUC {metrics['spike_task_auc']:.3f}.", ""]
    return lines


def comparison_section(title: str, metrics: dict) -> list[str]:
    """Markdown lines for an ``examples/compare_lfp.py`` metrics JSON."""
    spikes = metrics["spikes"]
    lfp = ", ".join(f"{r:.2f}" for r in metrics["lfp_r"])
    return [f"### {title}", "",
            "| RMSE (mV) | all | soma | axon | basal | oblique | apical |", "|---|---|---|---|---|---|---|",
            _rmse_row("free-running", metrics["rmse_mv"]), "",
            f"- somatic spikes: precision {spikes['precision']:.2f}, recall {spikes['recall']:.2f}, "
            f"F1 {spikes['f1']:.2f} ({spikes['n_true']} NEURON, {spikes['n_predicted']} surrogate)",
            f"- LFP Pearson r per electrode (z = 0 … 1000 µm): {lfp}",
            f"- current dipole moment (z) Pearson r: {metrics['dipole_z_r']:.2f}", ""]


def reference_section(name: str, reference: dict) -> list[str]:
    """Markdown lines stating the CI regression protocol, its numbers and margins."""
    protocol, metrics, margins = reference["protocol"], reference["metrics"], reference["margins"]
    return ["## CI regression reference", "",
            f"`tests/test_default_model.py` reruns `examples/compare_lfp.py` ({protocol['regime']} input, seed "
            f"{protocol['seed']}, {protocol['warmup_ms']} ms NEURON warm-up, {protocol['duration_ms']} ms compared; "
            f"NEURON runs inside the test) and checks these numbers (`{name}.json`) within the margins:", "",
            "| RMSE (mV) | all | soma | axon | basal | oblique | apical |", "|---|---|---|---|---|---|---|",
            _rmse_row("at shipping", metrics["rmse_mv"]), "",
            f"- LFP Pearson r: {', '.join(f'{r:.2f}' for r in metrics['lfp_r'])}; dipole (z) r "
            f"{metrics['dipole_z_r']:.2f}; spikes: {metrics['spikes']['n_true']} NEURON, "
            f"{metrics['spikes']['n_predicted']} surrogate.",
            f"- Margins: RMSE +{margins['rmse_mv']} mV per section, LFP/dipole r −{margins['lfp_r']}, "
            f"surrogate spike count ±{margins['spike_count']}.", ""]


def extra_data_lines(extras: list[dict]) -> list[str]:
    """Model-card lines for the additional training data sets (``extra_data``)."""
    return [f"- Also trained on `{extra['path']}`: base seed {extra['base_seed']}, {len(extra['train'])} training / "
            f"{len(extra['validation'])} validation simulations (its {len(extra['test'])} test simulations "
            f"unused); inputs `{json.dumps(extra['simulation_config'].get('inputs', {}), sort_keys=True)}`."
            for extra in extras]


def ensemble_lines(members: list[dict]) -> list[str]:
    """Model-card lines for the members of an ensemble (``python -m surrogate_cell.training ensemble``)."""
    if not members:
        return []
    lines = [f"- Ensemble of {len(members)} SRMs (`python -m surrogate_cell.training ensemble`): voltages are the "
             "members' mean, the spike logit the mean of their calibrated margins, calibrated again as a whole. "
             "Validation and test splits leave out every simulation any member trained on."]
    for member in members:
        data, training = member["data"], member.get("training", {})
        sets = [f"`{Path(d['path']).name}` ({len(d['train'])} training simulations)"
                for d in (data, *data.get("extra", []))]
        lines.append(f"  - `{member['checkpoint']}` (step {training.get('progress', {}).get('step', '?')}, "
                     f"seed {training.get('config', {}).get('seed', '?')}): spike targets {member['spike_targets']}, "
                     f"trained on {', '.join(sets)}.")
    return lines


def cell_description(recipe: dict) -> str:
    """What cell a model stands for, in words, from its stored recipe."""
    if recipe.get("builder") == "recipe":
        return (f"the cell recipe `{recipe.get('name')}` (`{Path(recipe.get('source') or '?').name}`; its geometry "
                "and passive properties are embedded in the checkpoint, so it runs without the recipe's files)")
    if recipe.get("morphology"):
        return f"the Hay L5 pyramidal cell on the morphology `{Path(recipe['morphology']).name}`"
    return "the project's built-in L5 pyramidal cell (`surrogate_cell.cells.l5pc()`)"


def model_card(name: str, meta: dict, size_bytes: int, wall_s: float, evaluations: dict[str, dict],
               comparisons: dict[str, dict], notes: str) -> str:
    """The Markdown model card."""
    data, training = meta["data"], meta["training"]
    config = training["config"]
    simulation = data.get("simulation_config", {})
    lines = [f"# Model card: `{name}`", "",
             f"Surrogate of {cell_description(meta['cell'].get('recipe', {}))} "
             f"({meta['cell']['n_segments']} segments, segment hash `{meta['cell']['segment_hash'][:16]}…`). "
             f"Load with `SurrogateCell(model=\"{name}\")`.", "",
             "## Data", "",
             f"- `python -m surrogate_cell.training simulate`, base seed {data.get('base_seed')}, "
             f"{len(data['train'])} training / {len(data['validation'])} validation / {len(data['test'])} "
             f"test simulations of {data.get('duration_ms')} ms (after warm-up).",
             f"- Input regime: `{simulation.get('inputs', {}).get('regime', 'published')}`; "
             f"simulation config: `{json.dumps(simulation, sort_keys=True)}`.",
             *extra_data_lines(data.get("extra", [])), "",
             "## Model and training", "",
             f"- Family `{meta['family']}`, config `{json.dumps(meta['model_config'], sort_keys=True)}`.",
             *ensemble_lines(meta.get("ensemble", [])),
             f"- File size {size_bytes / 2**20:.1f} MB.",
             f"- Training config (last phase{' of the first member' if meta.get('ensemble') else ''}): "
             f"`{json.dumps(config, sort_keys=True)}`; {training['progress']['step']} steps in that phase.",
             f"- Training wall time (all runs given to `ship`): {wall_s / 60:.0f} min on {hardware_description()}.", "",
             "## Held-out metrics", ""]
    for title, metrics in evaluations.items():
        lines += evaluation_section(title, metrics)
    for title, metrics in comparisons.items():
        lines += comparison_section(title, metrics)
    if notes:
        lines += ["## Notes", "", notes.strip(), ""]
    return "\n".join(lines)


def ship(checkpoint: str | Path, name: str, run_dirs: list[Path], evaluations: dict[str, Path],
         comparisons: dict[str, Path], notes: str = "", reference: Path | None = None,
         out_dir: Path = PRETRAINED_DIR) -> Path:
    """Package a checkpoint as a named model with a model card (``python -m surrogate_cell.training ship``).

    Parameters
    ----------
    checkpoint : str or Path
        Trained (and, for SRMs, calibrated) checkpoint.
    name : str
        Model name, e.g. ``"l5pc-default"``; ``SurrogateCell(model=name)`` loads it.
    run_dirs : list of Path
        Training run folders whose ``metrics.csv`` give the training wall time.
    evaluations : dict of str to Path
        Section title -> ``metrics.json`` of ``evaluate``, reported in the card.
    comparisons : dict of str to Path
        Section title -> metrics JSON of ``examples/compare_lfp.py``, reported in the card.
    notes : str, default ""
        Markdown appended to the card as "Notes".
    reference : Path, optional
        CI regression reference (JSON), copied to ``<name>.json`` and summarised in the card.
    out_dir : Path, default the package's ``pretrained/`` folder
        Where the files go.

    Returns
    -------
    Path
        ``out_dir/<name>.pt``, written without training state and with data paths reduced to
        file names; ``<name>.md`` (the card) next to it.

    Raises
    ------
    CheckpointError
        If the file exceeds the 25 MB package budget (it is then removed).
    """
    payload = shipped_payload(checkpoint)
    writable_folder(out_dir, "--out-dir")
    target = out_dir / f"{name}.pt"
    torch.save(payload, target)
    size = target.stat().st_size
    if size > PACKAGE_BUDGET_BYTES:
        target.unlink()
        raise CheckpointError(f"{checkpoint} is {size / 2**20:.1f} MB, over the {PACKAGE_BUDGET_BYTES / 2**20:.0f} MB "
                              "package budget; ship a smaller model config.")
    card = model_card(name, json.loads(payload["meta"]), size, training_wall_time_s(run_dirs),
                      {title: _read_json(p) for title, p in evaluations.items()},
                      {title: _read_json(p) for title, p in comparisons.items()}, notes)
    if reference is not None:
        (out_dir / f"{name}.json").write_text(Path(reference).read_text())
        card += "\n" + "\n".join(reference_section(name, _read_json(reference)))
    (out_dir / f"{name}.md").write_text(card)
    return target


# --------------------------------------------------------------------------- command line

COMMAND_HELP = "package a trained checkpoint as a named model with a model card"
COMMAND_DESCRIPTION = """Copy a checkpoint into surrogate_cell/pretrained/NAME.pt without its training
state, check it fits the 25 MB package budget, and write the model card NAME.md from the
training runs' metrics.csv and evaluation results (metrics.json of `evaluate`, JSON of
examples/compare_lfp.py --metrics-json). --reference copies the CI regression reference.
"""


def _read_json(path) -> dict:
    return json.loads(Path(path).read_text())


def _titled_paths(values: list[str] | None) -> dict[str, Path]:
    pairs = {}
    for value in values or []:
        title, _, path = value.partition("=")
        if not path:
            raise ValueError(f"expected TITLE=PATH, got {value!r}")
        pairs[title] = Path(path)
    return pairs


def add_arguments(parser) -> None:
    """Add the ``ship`` options to ``parser``."""
    parser.add_argument("--checkpoint", required=True, metavar="PT", help="trained checkpoint (best.pt)")
    parser.add_argument("--name", required=True, help="model name, e.g. l5pc-default")
    parser.add_argument("--run-dir", action="append", default=[], type=Path, metavar="DIR",
                        help="training run folder(s) whose metrics.csv give the training time")
    parser.add_argument("--evaluation", action="append", metavar="TITLE=JSON",
                        help="an `evaluate` metrics.json to report, with its section title")
    parser.add_argument("--comparison", action="append", metavar="TITLE=JSON",
                        help="an examples/compare_lfp.py metrics JSON to report")
    parser.add_argument("--notes", type=Path, metavar="MD", help="Markdown appended as 'Notes'")
    parser.add_argument("--reference", type=Path, metavar="JSON", help="CI regression reference metrics")
    parser.add_argument("--out-dir", type=Path, default=PRETRAINED_DIR, help="default: the package's pretrained/")


def run(args) -> int:
    """Run the ``ship`` subcommand; returns the exit status."""
    import sys

    try:
        target = ship(args.checkpoint, args.name, args.run_dir, _titled_paths(args.evaluation),
                      _titled_paths(args.comparison), args.notes.read_text() if args.notes else "",
                      args.reference, args.out_dir)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"shipped {target} ({target.stat().st_size / 2**20:.1f} MB) with {target.with_suffix('.md').name}")
    return 0
