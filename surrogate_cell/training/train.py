"""Train a surrogate on a simulated data set: ``python -m surrogate_cell.training train``.

Loss: MSE on z-scored voltages of every segment + BCE-with-logits on the somatic-spike task,
optionally balanced per task with LBTW. SRM checkpoints read no voltages, so teacher-forced
training is already free-running training for everything below threshold; ``train``
calibrates their spike output on the validation splits at the end. For the published
voltage-feedback models (MH, MMoE, MMoEEx), which read their own past voltages, robustness
when run free can be trained with Gaussian noise on the voltage history
(``history_noise_std``), random drifts ramped into it (``history_drift_std``), a
free-running lead-in of up to ``free_lead_ms`` (the model on its own predictions, no
gradients) and unrolling ``rollout_steps`` milliseconds on the model's own predictions. With
``val_free_ms`` > 0 the best checkpoint is the one with the lowest free-running validation
RMSE. Runs on one process or under ``torchrun``
(DistributedDataParallel, gloo on CPU, NCCL on GPU); rank 0 writes checkpoints (``best.pt``,
``last.pt``) and ``metrics.csv``: at every evaluation the training and validation losses, also
per section type of the cell (and of the spike task), the LBTW task weights per section type
(with ``lbtw_alpha > 0``), and for families with experts the diversity of the experts and
gates and every expert's share of the gate weight (:mod:`surrogate_cell.training.diversity`;
a warning when the gates collapse onto one expert).
"""

from __future__ import annotations

import csv
import ctypes
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from surrogate_cell.checkpoint import (
    CheckpointError,
    cell_meta_from_layout,
    model_meta,
    normalisation_from_checkpoint,
    read_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)
from surrogate_cell.config import dataclass_from_mapping, read_mapping, resolve_config, resolve_reference
from surrogate_cell.data.store import open_data_set
from surrogate_cell.datasets.windows import (
    SOMA_ONSET_TARGETS,
    BalancedSampler,
    RawSimulations,
    WindowData,
    build_window_data,
    check_long_enough,
    input_kind,
    load_labelled,
    spike_targets_of,
    split_simulations,
)
from surrogate_cell.device import select_device
from surrogate_cell.engine import FullWindowStepper, free_run
from surrogate_cell.models import build_model, get_family, load_model_config
from surrogate_cell.models.base import model_input
from surrogate_cell.models.normalisation import Normalisation
from surrogate_cell.outputs import writable_folder
from surrogate_cell.spikes import best_crossing_threshold
from surrogate_cell.training.diversity import (
    diagnostic_columns,
    flat_diagnostics,
    mixture_diagnostics,
    warn_if_collapsed,
)

DIVERSITY_WINDOWS = 256
"""Validation windows on which the experts' and gates' diversity is measured at each evaluation."""


@dataclass
class TrainConfig:
    """Everything that defines a training run (the packaged ``train_*.yaml`` configs hold these fields)."""

    data: str = ""
    # More data sets of the same cell (e.g. another input regime), each split like ``data``;
    # their training/validation simulations join those of ``data``, and an SRM's spike output
    # is calibrated on all validation splits. The model card's test split is that of ``data``.
    extra_data: list[str] = dataclasses.field(default_factory=list)
    out_dir: str = "runs/surrogate"
    model: str = "models/mmoe_small.yaml"  # a model config file or packaged name
    batch_size: int = 64
    lr: float = 1e-3
    # "cosine": the learning rate falls from lr to 0 over max_steps (less weight noise at the
    # end: neighbouring segments' towers then agree to the small voltage differences between
    # them that set the membrane currents); "constant": lr throughout
    lr_schedule: str = "constant"
    weight_decay: float = 1e-4
    max_steps: int = 2000
    eval_every: int = 200
    val_windows: int = 1024
    patience: int = 10
    spike_fraction: float | None = 1.0 / 3.0  # None: the data's own spike rate
    spike_loss_weight: float = 1.0
    lbtw_alpha: float = 0.0
    history_noise_std: float = 0.0
    history_drift_std: float = 0.0
    rollout_steps: int = 1
    free_lead_ms: int = 0
    val_free_ms: int = 0
    val_free_windows: int = 32
    init_from: str = ""
    validation_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    # weights and batch order; None: ``seed``. Members of an ensemble share ``seed`` (one split,
    # so that the test split stays held out from all of them) and differ here.
    init_seed: int | None = None
    max_simulations: int = 0
    device: str = "auto"
    mixed_precision: bool = True  # bfloat16 autocast on CUDA and on CPUs with native bfloat16
    num_threads: int = 0

    @classmethod
    def from_dict(cls, values: dict, source: str = "training config") -> TrainConfig:
        """Build from plain data; a ValueError names unknown fields, ``source`` and the valid fields."""
        return dataclass_from_mapping(cls, values, source, noun="field")

    def __post_init__(self) -> None:
        """Check the choices."""
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")

    @property
    def weight_seed(self) -> int:
        """The seed of the initial weights and the batch order."""
        return self.seed if self.init_seed is None else self.init_seed

    def learning_rate(self, step: int) -> float:
        """The learning rate of optimiser step ``step`` (0-based)."""
        if self.lr_schedule == "cosine":
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, self.max_steps) / self.max_steps))
        return self.lr


def load_train_config(path: str | Path | None, **overrides) -> TrainConfig:
    """Read a YAML training config and apply non-None overrides.

    ``path`` is a file or a packaged config name (``train_small.yaml``; see
    :func:`surrogate_cell.config.resolve_config`); None or "" means the defaults. The file's
    ``model`` is relative to the file's folder (else a packaged name such as
    ``models/srm.yaml``) and is stored resolved; a ``model`` override (``--model``) is a path or
    a packaged name. Data and output paths (``data``, ``extra_data``, ``out_dir``,
    ``init_from``) are relative to the working directory, in the file as on the command line.
    """
    values, source = {}, "training config"
    if path:
        path = resolve_config(path)
        values, source = read_mapping(path), str(path)
        if values.get("model"):
            values["model"] = str(resolve_reference(values["model"], path))
    values.update({key: value for key, value in overrides.items() if value is not None})
    return TrainConfig.from_dict(values, source)


# --------------------------------------------------------------------------- losses


def task_losses(voltage_pred, spike_logit, voltage_target, spike_target) -> torch.Tensor:
    """Per-task losses: MSE of each segment's voltage (z units), then the spike BCE (last)."""
    mse = ((voltage_pred.float() - voltage_target) ** 2).mean(dim=0)
    bce = F.binary_cross_entropy_with_logits(spike_logit.float(), spike_target)
    return torch.cat([mse, bce[None]])


def drifted(history: torch.Tensor, drift_std: float) -> torch.Tensor:
    """``history`` plus a random drift that ramps in linearly over the window.

    The drift of each window is a shared offset plus one per segment (each normal with
    ``drift_std``, z units), growing from 0 at the oldest millisecond to full at the newest:
    the shape of a free run wandering off. Learning to predict the true next voltage from
    such a history gives the model a restoring force against its own accumulated errors.
    """
    batch, window, segments = history.shape
    offset = drift_std * (torch.randn(batch, 1, 1) + torch.randn(batch, 1, segments)) / 2 ** 0.5
    ramp = torch.linspace(0.0, 1.0, window)[None, :, None]
    return history + (offset * ramp).to(history)


def unrolled_task_losses(model, events, history, targets, spike_targets, window: int,
                         noise_std: float = 0.0, free_steps: int = 0,
                         drift_std: float = 0.0, normalisation: Normalisation | None = None) -> torch.Tensor:
    """Per-task losses averaged over the steps after a free-running lead-in.

    The first ``free_steps`` steps run the model on its own predictions without gradients and
    in evaluation mode, exactly as it will run in a SurrogateCell, so the loss steps start
    from a history carrying the model's own drift and teach it to steer back to the truth.
    On the loss steps fed-back predictions are detached (the "pushforward" trick): no
    backpropagation through the rollout, which keeps the input free of gradients and so on
    the fast sparse-event path (about 9x cheaper per step here).
    """
    if noise_std > 0:
        history = history + noise_std * torch.randn_like(history)
    if drift_std > 0:
        history = drifted(history, drift_std)
    history = free_run_history(model, events, history, window, free_steps, normalisation)
    horizon = targets.shape[1]
    total = 0.0
    for step in range(free_steps, horizon):  # a loop over time steps, not tasks
        voltage, spike = model(model_input(events[:, step:step + window], history))
        total = total + task_losses(voltage, spike, targets[:, step], spike_targets[:, step])
        history = torch.cat([history[:, 1:], voltage[:, None].detach().float()], dim=1)
    return total / (horizon - free_steps)


@torch.no_grad()
def free_run_history(model, events, history, window: int, steps: int, normalisation: Normalisation) -> torch.Tensor:
    """The z-voltage window after ``steps`` free-running steps from ``history`` (eval mode).

    ``events`` (B, >= W - 1 + steps, E) start with the history's window; the model runs through
    :func:`surrogate_cell.engine.free_run` on the reference :class:`FullWindowStepper`, each
    prediction clipped to the training range as in every stepper.
    """
    if steps == 0:
        return history
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    was_training = model.training
    stepper = FullWindowStepper(model, normalisation, history.shape[0], history.device, history.dtype)
    earlier_events = torch.cat([torch.zeros_like(events[:, :1]), events[:, :window - 1]], dim=1)
    run = free_run(stepper, events[:, window - 1:window - 1 + steps], normalisation.to_mv(history), earlier_events)
    model.train(was_training)
    predicted = (run.voltages_mv.to(history.dtype) - stepper.mean) / stepper.std
    return torch.cat([history, predicted], dim=1)[:, -window:]


class LossBalancer:
    """Combine per-task losses; with ``alpha > 0``, LBTW weights ``(L_i / L_i(0)) ** alpha``.

    ``L_i(0)`` is task ``i``'s loss on the first batch of the current period (Liu et al. 2019,
    loss-balanced task weighting); weights carry no gradient.
    """

    def __init__(self, alpha: float, spike_weight: float):
        self.alpha = alpha
        self.spike_weight = spike_weight
        self.initial: torch.Tensor | None = None
        self.latest: torch.Tensor | None = None
        """The task weights of the last :meth:`combine` (for the metrics log)."""

    def start_period(self) -> None:
        """Forget the reference losses: the next batch sets them."""
        self.initial = None

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        """Task weights for this batch."""
        if self.alpha <= 0:
            return torch.ones_like(losses)
        if self.initial is None:
            self.initial = losses.detach().clamp_min(1e-12)
        return (losses.detach() / self.initial) ** self.alpha

    def combine(self, losses: torch.Tensor) -> torch.Tensor:
        """Scalar loss: weighted mean voltage loss + spike weight x weighted spike loss."""
        self.latest = self.weights(losses)
        weighted = self.latest * losses
        return weighted[:-1].mean() + self.spike_weight * weighted[-1]


def section_type_means(section_types: Sequence[str]) -> tuple[list[str], torch.Tensor]:
    """The section types in order of first appearance, and the (n_types, n_segments) matrix that
    averages per-segment values over the segments of each type."""
    types = [str(kind) for kind in section_types]
    names = list(dict.fromkeys(types))
    matrix = torch.zeros(len(names), len(types), dtype=torch.float64)
    matrix[[names.index(kind) for kind in types], torch.arange(len(types))] = 1.0
    return names, matrix / matrix.sum(dim=1, keepdim=True)


class TaskLog:
    """Per-task values of the metrics log, reported per section type of the cell and for the spike task.

    Training losses and LBTW weights are summed over the steps of an evaluation period
    (:meth:`add`) and reported as period means; validation losses are reported as given.
    """

    def __init__(self, section_types: Sequence[str], lbtw: bool):
        """``section_types``: one per segment (voltage task); ``lbtw``: also log the task weights."""
        self.names, self.means = section_type_means(section_types)
        self.lbtw = lbtw
        self.start_period()

    def start_period(self) -> None:
        """Forget the sums of the last period."""
        self.losses, self.weights, self.steps = None, None, 0

    def add(self, losses: torch.Tensor, weights: torch.Tensor | None) -> None:
        """Add one step's per-task losses and task weights (n_tasks,) (no copy to the host: no sync)."""
        losses = losses.detach()
        self.losses = losses if self.losses is None else self.losses + losses
        if self.lbtw and weights is not None:
            self.weights = weights if self.weights is None else self.weights + weights
        self.steps += 1

    def columns(self) -> tuple[str, ...]:
        """The metrics.csv columns this log fills."""
        kinds = ("train_loss", "val_loss") + (("lbtw_weight",) if self.lbtw else ())
        return tuple(f"{kind}_{name}" for kind in kinds for name in (*self.names, "spike"))

    def per_type(self, values: torch.Tensor | None, prefix: str) -> dict[str, float]:
        """``{prefix}_{type}``: per-task ``values`` (n_tasks,) averaged per section type, and the spike task's."""
        if values is None:
            return {f"{prefix}_{name}": float("nan") for name in (*self.names, "spike")}
        values = values.detach().double().cpu()
        means = self.means @ values[:-1]
        return {**{f"{prefix}_{name}": float(v) for name, v in zip(self.names, means)},
                f"{prefix}_spike": float(values[-1])}

    def period_row(self, validation_losses: torch.Tensor) -> dict[str, float]:
        """This period's mean training losses (and LBTW weights) and ``validation_losses`` (n_tasks,), per type."""
        steps = max(self.steps, 1)
        row = {**self.per_type(None if self.losses is None else self.losses / steps, "train_loss"),
               **self.per_type(validation_losses, "val_loss")}
        if self.lbtw:
            row.update(self.per_type(None if self.weights is None else self.weights / steps, "lbtw_weight"))
        return row


# --------------------------------------------------------------------------- setup


def reuse_freed_memory() -> None:
    """Keep large freed blocks in the process (glibc only; elsewhere a no-op).

    Every training step allocates a few batch tensors of 100-200 MB. glibc serves blocks
    above 32 MB with a fresh ``mmap`` and unmaps them when freed, so each step faults every
    page of them in again (zero-filled): on the 2-core CPU this made SRM steps 2-3x slower,
    most of the time spent in the kernel. Serving them from the heap and never trimming it
    lets the next step reuse the same pages.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_max = -1, -4
    libc.mallopt(m_mmap_max, 0)
    libc.mallopt(m_trim_threshold, 2**31 - 1)


def has_native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively: any CUDA GPU, or a CPU with AVX512-BF16/AMX.

    Without it, bfloat16 autocast on a CPU is emulated and slower than float32.
    """
    if device.type == "cuda":
        return True
    try:
        return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def autocast_context(device: torch.device, enabled: bool) -> torch.autocast:
    """bfloat16 autocast for the forward pass where ``device`` supports it natively, else a no-op.

    Matrix products and convolutions run in bfloat16 (float32 accumulation); parameters,
    optimiser state and losses stay float32. On this project's AVX512-BF16 CPU it makes
    MMoE training about 1.5 times faster (``benchmarks/bench_models.py --bf16``).
    """
    return torch.autocast(device.type, dtype=torch.bfloat16,
                          enabled=enabled and has_native_bfloat16(device))


def distributed_context() -> tuple[int, int]:
    """(rank, world size); initialises torch.distributed when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite; training stops (last good checkpoints are kept)."""


@dataclass
class PreparedData:
    """Train and validation windows plus everything a checkpoint records about the data."""

    train: WindowData
    validation: WindowData
    normalisation: Normalisation
    cell_meta: dict
    data_meta: dict
    notes: list = dataclasses.field(default_factory=list)
    """Messages for the user (e.g. simulations a resumed run leaves out)."""


def _available(config: TrainConfig, data_set) -> list[int]:
    """The simulation indices of one data set that a run may use (``max_simulations`` applied)."""
    indices = data_set.simulation_indices()
    return indices[:config.max_simulations] if config.max_simulations else indices


def _split(config: TrainConfig, data_set) -> tuple[list, list, list]:
    """Train/validation/test simulation indices of one data set (``max_simulations`` applied)."""
    return split_simulations(_available(config, data_set), config.validation_fraction,
                             config.test_fraction, config.seed)


def _few(indices: list[int], shown: int = 8) -> str:
    """``indices`` for a message: all of them, or the first ``shown`` and how many more."""
    more = len(indices) - shown
    return str(indices) if more <= 0 else f"{indices[:shown]} and {more} more"


def _resumed_split(config: TrainConfig, data_set, record: dict) -> tuple[tuple, str | None]:
    """The split a resumed run recorded for ``data_set``, and a note on simulations added since.

    Raises
    ------
    CheckpointError
        If the data set no longer holds every simulation of that split.
    """
    split = tuple(sorted(int(i) for i in record[name]) for name in ("train", "validation", "test"))
    used = {index for part in split for index in part}
    missing = sorted(used - set(data_set.simulation_indices()))
    if missing:
        raise CheckpointError(
            f"the run in {config.out_dir} (last.pt) was split over simulations that {data_set.path} no "
            f"longer holds: {_few(missing)}. Restore that data set (simulate with its seed and --n-sims "
            f"{max(used) + 1} remakes them) or train into another out_dir.")
    new = sorted(set(_available(config, data_set)) - used)
    note = None if not new else (
        f"note: {data_set.path} has {len(new)} simulation(s) the run in {config.out_dir} was not split "
        f"over ({_few(new)}); resuming keeps its split and normalisation and leaves them out. "
        f"Train into another out_dir to use them.")
    return split, note


def _resumed_splits(config: TrainConfig, data_sets: list, stored: dict) -> tuple[list, list[str]]:
    """Per data set, the split of the run being resumed (its checkpoint's ``data`` metadata)."""
    records = [stored, *stored.get("extra", [])]
    if len(records) != len(data_sets):
        raise CheckpointError(f"{config.out_dir}/last.pt records {len(records)} data set(s), this run has "
                              f"{len(data_sets)}; use another out_dir.")
    pairs = [_resumed_split(config, data_set, record) for data_set, record in zip(data_sets, records)]
    return [split for split, _ in pairs], [note for _, note in pairs if note]


def _resumed_cell_meta(config: TrainConfig, data_set, stored_cell: dict) -> dict:
    """The cell metadata of the run being resumed, checked against the data set's cell."""
    if stored_cell["segment_hash"] != data_set.layout.segment_hash:
        raise CheckpointError(f"the run in {config.out_dir} (last.pt) was trained on another cell than "
                              f"{data_set.path} now holds; use another out_dir.")
    return stored_cell


def _fitted_cell_meta(data_set, train_raw: RawSimulations) -> dict:
    """Cell metadata of a new run: the layout, and the soma spike threshold fitted on ``train_raw``."""
    cell_meta = cell_meta_from_layout(data_set.layout)
    soma_traces = train_raw.voltages_mv[:, cell_meta["soma_segment"]]
    cell_meta["spike_threshold_mv"], cell_meta["spike_threshold_f1"] = best_crossing_threshold(
        soma_traces, train_raw.spike_times)
    cell_meta["spike_targets"] = SOMA_ONSET_TARGETS
    cell_meta["input_kind"] = input_kind(data_set)
    cell_meta["ca_segment"] = ca_segment_of(data_set.layout.recipe)
    return cell_meta


def ca_segment_of(recipe: dict) -> int | None:
    """The apical Ca hot-zone segment (:func:`~surrogate_cell.cells.l5pc.ca_hot_zone_segment`) of
    the cell a data set's recipe builds; None for a cell without apical dendrites."""
    from surrogate_cell.cells.build import build_stored_cell
    from surrogate_cell.cells.l5pc import ca_hot_zone_segment

    cell = build_stored_cell(recipe, {})
    if "apical" not in set(cell.section_types):
        return None
    return ca_hot_zone_segment(cell)


def needed_duration_ms(config: TrainConfig, window: int) -> int:
    """The shortest simulation (ms) that training with ``config`` and a ``window`` ms model can use:
    the window, then the free-running lead-in and unrolled steps, or the free validation run."""
    return window + max(config.free_lead_ms + config.rollout_steps, config.val_free_ms, 1)


def _open_data_sets(config: TrainConfig, window: int) -> list:
    """The primary data set and the extra ones, checked to fit together and to be long enough."""
    data_set = open_data_set(config.data)
    extras = [open_data_set(path) for path in config.extra_data]
    for extra in extras:
        _check_compatible(data_set, extra)
    check_long_enough(data_set, needed_duration_ms(config, window),
                      f"a {window} ms model window plus free_lead_ms + rollout_steps "
                      f"({config.free_lead_ms} + {config.rollout_steps}) or val_free_ms ({config.val_free_ms})")
    return [data_set, *extras]


def _check_compatible(primary, extra) -> None:
    """Refuse an extra data set of another cell or recording length than the primary one."""
    if extra.attrs.get("segment_hash") != primary.attrs.get("segment_hash"):
        raise ValueError(f"extra_data {extra.path} was simulated on another cell than data {primary.path}; "
                         "simulate it with the same --morphology.")
    if extra.duration_ms != primary.duration_ms:
        raise ValueError(f"extra_data {extra.path} holds {extra.duration_ms} ms simulations, data {primary.path} "
                         f"{primary.duration_ms} ms; simulate it with --duration-ms {primary.duration_ms}.")


def _provenance(data_set, split: tuple[list, list, list]) -> dict:
    """What a checkpoint records of one data set: path, simulation config, seed and split."""
    return {"path": str(data_set.path), "simulation_config": data_set.config,
            "base_seed": int(data_set.attrs["base_seed"]),
            "train": split[0], "validation": split[1], "test": split[2]}


def prepare_data(config: TrainConfig, window: int, progress: bool,
                 resumed: dict | None = None) -> PreparedData:
    """Split the simulations, fit the normalisation on the training split and stack windows.

    Parameters
    ----------
    config : TrainConfig
        The run's settings.
    window : int
        The model's input window (ms).
    progress : bool
        Whether to show loading progress bars.
    resumed : dict, optional
        The payload of the run's ``last.pt`` when resuming: its split, normalisation and cell
        metadata are kept (simulations added to the data sets since are left out, with a note in
        :attr:`PreparedData.notes`), so the resumed weights see the data they were trained on.
    """
    data_sets = _open_data_sets(config, window)
    data_set, extras = data_sets[0], data_sets[1:]
    if resumed is None:
        splits, notes = [_split(config, each) for each in data_sets], []
    else:
        splits, notes = _resumed_splits(config, data_sets, resumed["meta"]["data"])
    train_raw, train_labels = load_labelled(data_sets, [split[0] for split in splits], progress)
    if resumed is None:
        normalisation = Normalisation.fit(train_raw.voltages_mv)
        cell_meta = _fitted_cell_meta(data_set, train_raw)
    else:
        normalisation = normalisation_from_checkpoint(resumed)
        cell_meta = _resumed_cell_meta(config, data_set, resumed["meta"]["cell"])
    train_raw = spike_targets_of(train_raw, cell_meta)
    val_raw, val_labels = load_labelled(data_sets, [split[1] for split in splits], progress)
    val_raw = spike_targets_of(val_raw, cell_meta)
    data_meta = {**_provenance(data_set, splits[0]), "duration_ms": data_set.duration_ms,
                 "extra": [_provenance(each, split) for each, split in zip(extras, splits[1:])]}
    return PreparedData(
        train=build_window_data(train_raw, normalisation, window, train_labels),
        validation=build_window_data(val_raw, normalisation, window, val_labels),
        normalisation=normalisation, cell_meta=cell_meta, data_meta=data_meta, notes=notes,
    )


def validation_positions(data: WindowData, count: int, seed: int):
    """A fixed set of validation windows."""
    sims, times = data.target_positions()
    picks = np.random.default_rng(seed + 7919).permutation(sims.size)[:count]
    return sims[picks], times[picks]


@torch.no_grad()
def validate(model, data: WindowData, positions, normalisation: Normalisation, device,
             batch_size: int = 256) -> dict:
    """Teacher-forced validation: z-unit voltage MSE, RMSE in mV, spike BCE.

    Returns ``val_loss``, ``val_rmse_mv`` and ``val_task_losses``: every task's loss (n_tasks,),
    the voltage MSE (z units) of every segment, then the spike BCE.
    """
    model.eval()
    squared_mv, losses, count, task_sums = 0.0, 0.0, 0, 0.0
    for start in range(0, positions[0].size, batch_size):
        sims, times = positions[0][start:start + batch_size], positions[1][start:start + batch_size]
        events, history, targets, spikes = (t.to(device) for t in data.gather(sims, times))
        voltage, spike = model(model_input(events, history))
        per_task = task_losses(voltage, spike, targets[:, 0], spikes[:, 0])
        error_mv = (voltage.float() - targets[:, 0]) * torch.as_tensor(normalisation.std, device=device)
        squared_mv += float((error_mv ** 2).sum())
        losses += float(per_task[:-1].mean() + per_task[-1]) * sims.size
        task_sums = task_sums + per_task.double().cpu() * sims.size
        count += sims.size
    model.train()
    return {"val_loss": losses / count,
            "val_rmse_mv": (squared_mv / (count * data.n_segments)) ** 0.5,
            "val_task_losses": task_sums / count}


@torch.no_grad()
def validate_free_running(model, data: WindowData, positions, normalisation: Normalisation, device,
                          duration_ms: int, window: int) -> float:
    """RMSE (mV) over ``duration_ms`` (< window) of free running from true histories at ``positions``."""
    if not 0 < duration_ms < window:
        raise ValueError(f"val_free_ms ({duration_ms}) must lie between 1 and the model window ({window}) - 1")
    sims, times = positions
    keep = times <= data.n_ms - duration_ms
    events, history, targets, _ = (t.to(device) for t in data.gather(sims[keep], times[keep], duration_ms))
    predicted = free_run_history(model, events, history, window, duration_ms, normalisation)[:, -duration_ms:]
    error_mv = (predicted - targets) * torch.as_tensor(normalisation.std, device=device)
    return float(error_mv.pow(2).mean().sqrt())


# --------------------------------------------------------------------------- state


@dataclass
class Progress:
    """Counters saved in ``last.pt`` so a killed run resumes exactly."""

    step: int = 0
    best_val: float = float("inf")
    evals_without_improvement: int = 0
    elapsed_s: float = 0.0  # training wall time so far, over all resumed sessions


def _training_state(optimizer, progress: Progress, sampler: BalancedSampler,
                    balancer: LossBalancer) -> dict:
    return {
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "sampler_rng": json.dumps(sampler.rng.bit_generator.state),
        "progress": json.dumps(dataclasses.asdict(progress)),
        "lbtw_initial": balancer.initial if balancer.initial is not None else torch.empty(0),
    }


def _restore_training_state(payload: dict, optimizer, sampler: BalancedSampler,
                            balancer: LossBalancer) -> Progress:
    optimizer.load_state_dict(payload["optimizer"])
    torch.set_rng_state(payload["torch_rng"])
    sampler.rng.bit_generator.state = json.loads(payload["sampler_rng"])
    balancer.initial = payload["lbtw_initial"] if payload["lbtw_initial"].numel() else None
    return Progress(**json.loads(payload["progress"]))


def _set_aside(path: Path) -> Path:
    """Rename ``path`` to the first free ``<stem>.<n><suffix>`` next to it; returns the new name."""
    number = 1
    while (target := path.with_name(f"{path.stem}.{number}{path.suffix}")).exists():
        number += 1
    path.rename(target)
    return target


def _rows_up_to(path: Path, step: int) -> tuple[list[list[str]], bool] | None:
    """The header and rows of CSV ``path`` whose ``step`` is at most ``step`` (torn rows dropped),
    and whether any row was dropped; None for a file without a ``step`` column (left alone)."""
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or "step" not in rows[0]:
        return None
    header, column = rows[0], rows[0].index("step")

    def kept(row: list[str]) -> bool:
        try:
            return len(row) == len(header) and int(row[column]) <= step
        except ValueError:
            return False

    body = [row for row in rows[1:] if kept(row)]
    torn_end = not path.read_bytes().endswith(b"\n")
    return [header, *body], len(body) < len(rows) - 1 or torn_end


class MetricsLog:
    """CSV of evaluation rows (plus TensorBoard scalars when it is installed).

    A resumed run continues the file of the run it resumes, first dropping the rows of steps
    after ``resumed_step`` (evaluations of a session killed before it saved ``last.pt``, which
    the resumed run repeats), so every step has one row. A new run in a folder that holds an
    older ``metrics.csv`` sets that file aside as ``metrics.<n>.csv``. ``extra_fields`` are
    columns after :attr:`FIELDS` (per-section-type losses, LBTW weights, diversity); a resumed
    file with other columns is rewritten with these (values it lacks left empty).
    """

    FIELDS = ("step", "train_loss", "val_loss", "val_rmse_mv", "val_free_rmse_mv", "elapsed_s")

    def __init__(self, out_dir: Path, resumed_step: int | None = None, extra_fields: Sequence[str] = ()):
        out_dir.mkdir(parents=True, exist_ok=True)
        self.fields = self.FIELDS + tuple(extra_fields)
        self.path = out_dir / "metrics.csv"
        self.set_aside = None
        if self.path.exists() and resumed_step is not None:
            self._drop_rows_after(resumed_step)
        elif self.path.exists() and len(self.path.read_text().splitlines()) > 1:
            self.set_aside = _set_aside(self.path)
        if resumed_step is None or not self.path.exists():
            self.path.write_text(",".join(self.fields) + "\n")
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tensorboard = SummaryWriter(str(out_dir / "tensorboard"))
        except ImportError:
            self.tensorboard = None

    def _drop_rows_after(self, step: int) -> None:
        """Rewrite the file (atomically) without rows of steps after ``step`` or torn rows, and
        with this log's columns."""
        result = _rows_up_to(self.path, step)
        if result is None:
            return
        (header, *rows), dropped = result
        if not dropped and tuple(header) == self.fields:
            return
        rows = [[dict(zip(header, row)).get(name, "") for name in self.fields] for row in rows]
        temporary = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        with temporary.open("w", newline="") as handle:
            csv.writer(handle).writerows([self.fields, *rows])
        os.replace(temporary, self.path)

    def write(self, row: dict) -> None:
        """Add one row."""
        with self.path.open("a", newline="") as handle:
            csv.writer(handle).writerow([row.get(name, "") for name in self.fields])
        if self.tensorboard is not None:
            for name in self.fields[1:]:
                if name != "elapsed_s" and isinstance(row.get(name), (int, float)):
                    self.tensorboard.add_scalar(name, row[name], row["step"])


# --------------------------------------------------------------------------- main loop


class Trainer:
    """One training run (single process or one rank of a torchrun job)."""

    def __init__(self, config: TrainConfig, progress_bar: bool = True):
        self.config = config
        self.rank, self.world = distributed_context()
        self.device = select_device(config.device)
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        if self.device.type == "cpu":
            reuse_freed_memory()
        if self.device.type == "cuda" and self.world > 1:
            self.device = torch.device("cuda", self.rank % torch.cuda.device_count())
        self.out_dir = writable_folder(config.out_dir, "--out-dir", create=False)
        self.show_progress = progress_bar and self.rank == 0
        family, fields = load_model_config(config.model)
        self.family = family
        self.resumed = self._resumable_checkpoint()
        self.data = prepare_data(config, int(fields.get("window", 100)), self.show_progress, self.resumed)
        for note in self.data.notes if self.rank == 0 else ():
            print(note, file=sys.stderr)
        torch.manual_seed(config.weight_seed)
        self.model = build_model(family, {
            **fields,
            "in_channels": self.data.train.n_event_channels + self.data.train.n_segments,
            "n_tasks": self.data.train.n_segments + 1,
            "event_channels": self.data.train.n_event_channels,
            **get_family(family).data_fields(self.data.cell_meta, self.data.normalisation, fields),
        }).to(self.device)
        self.window = self.model.config.window
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr,
                                          weight_decay=config.weight_decay)
        self.sampler = BalancedSampler(self.data.train, config.spike_fraction, config.rollout_steps,
                                       np.random.default_rng([config.weight_seed, self.rank]),
                                       lead=config.free_lead_ms)
        self.balancer = LossBalancer(config.lbtw_alpha, config.spike_loss_weight)
        self.task_log = TaskLog(self.data.cell_meta["section_types"], lbtw=config.lbtw_alpha > 0)
        self.has_experts = get_family(family).has_experts
        self.val_positions = validation_positions(self.data.validation, config.val_windows, config.seed)
        self.progress = Progress()
        if config.init_from:
            self._initialise_from(config.init_from)
        self._resume_if_possible()
        self.network = self._wrap_distributed()

    def _wrap_distributed(self):
        if self.world == 1:
            return self.model
        from torch.nn.parallel import DistributedDataParallel
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=ids)

    def meta(self) -> dict:
        """Checkpoint metadata for the current state."""
        return {
            **model_meta(self.model, self.family),
            "cell": self.data.cell_meta,
            "data": self.data.data_meta,
            "training": {"config": dataclasses.asdict(self.config),
                         "progress": dataclasses.asdict(self.progress), "world_size": self.world},
        }

    def _initialise_from(self, path: str) -> None:
        """Start from another run's weights (fine-tuning), checking they fit this data and model."""
        payload = read_checkpoint(path)
        if payload["meta"]["cell"]["segment_hash"] != self.data.cell_meta["segment_hash"]:
            raise CheckpointError(f"init_from {path} was trained on another cell than {self.config.data}.")
        try:
            self.model.load_state_dict(payload["model"])
        except RuntimeError as error:
            raise CheckpointError(f"init_from {path} does not fit the model config {self.config.model}: "
                                  f"{str(error).splitlines()[0]}") from None

    def _resumable_checkpoint(self) -> dict | None:
        """The payload of ``out_dir/last.pt`` when this run continues it (settings checked), else
        None; temporary files of saves a kill interrupted are removed first."""
        if self.rank == 0:
            remove_stale_temporaries(self.out_dir)
        last = self.out_dir / "last.pt"
        if not last.exists():
            return None
        payload = read_checkpoint(last)
        saved = payload["meta"]["training"]["config"]
        mine = dataclasses.asdict(self.config)
        resumable_changes = ("max_steps", "patience", "num_threads", "device")
        defaults = dataclasses.asdict(TrainConfig())  # fields added since that run have their defaults
        differing = sorted(k for k in mine if k not in resumable_changes
                           and saved.get(k, defaults[k]) != mine[k])
        if differing:
            raise CheckpointError(
                f"{last} belongs to a run with different settings ({differing}); use another "
                "out_dir, or move it away to start afresh."
            )
        return payload

    def _resume_if_possible(self) -> None:
        """Continue from ``last.pt`` (read by :meth:`_resumable_checkpoint`): weights, optimiser,
        random states and counters. Sets ``resumed_step`` (None for a new run)."""
        payload, self.resumed, self.resumed_step = self.resumed, None, None  # free the payload
        if payload is None:
            return
        self.model.load_state_dict(payload["model"])
        self.progress = _restore_training_state(payload, self.optimizer, self.sampler, self.balancer)
        self.resumed_step = self.progress.step

    def train_step(self) -> float:
        """One optimiser step on a balanced batch; returns the combined loss."""
        sims, times = self.sampler.sample(self.config.batch_size)
        # A lead-in of random length (0 .. free_lead_ms) mixes fresh and drifted histories.
        lead = int(self.sampler.rng.integers(0, self.config.free_lead_ms + 1))
        horizon = lead + self.config.rollout_steps
        batch = [t.to(self.device) for t in self.data.train.gather(sims, times - lead, horizon)]
        with autocast_context(self.device, self.config.mixed_precision):
            losses = unrolled_task_losses(self.network, *batch, self.window,
                                          self.config.history_noise_std, free_steps=lead,
                                          drift_std=self.config.history_drift_std,
                                          normalisation=self.data.normalisation)
        loss = self.balancer.combine(losses)
        self.task_log.add(losses, self.balancer.latest)
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.learning_rate(self.progress.step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def _evaluate_and_save(self, train_loss: float, started: float, log: MetricsLog | None) -> bool:
        """Validate, checkpoint (rank 0) and return whether training should stop early."""
        self.progress.elapsed_s = time.perf_counter() - started
        scores = validate(self.model, self.data.validation, self.val_positions,
                          self.data.normalisation, self.device)
        per_task = scores.pop("val_task_losses")
        scores["val_free_rmse_mv"] = float("nan")
        criterion = scores["val_loss"]
        if self.config.val_free_ms:
            count = self.config.val_free_windows
            positions = (self.val_positions[0][:count], self.val_positions[1][:count])
            scores["val_free_rmse_mv"] = criterion = validate_free_running(
                self.model, self.data.validation, positions, self.data.normalisation, self.device,
                self.config.val_free_ms, self.window)
        improved = criterion < self.progress.best_val
        if improved:
            self.progress.best_val = criterion
            self.progress.evals_without_improvement = 0
        else:
            self.progress.evals_without_improvement += 1
        if self.rank == 0:
            log.write({"step": self.progress.step, "train_loss": train_loss,
                       "elapsed_s": round(self.progress.elapsed_s, 2), **scores,
                       **self.task_log.period_row(per_task), **self._mixture_metrics()})
            if improved:
                save_checkpoint(self.out_dir / "best.pt", self.model, self.meta(), self.data.normalisation)
            state = _training_state(self.optimizer, self.progress, self.sampler, self.balancer)
            save_checkpoint(self.out_dir / "last.pt", self.model, self.meta(), self.data.normalisation, state)
            self.saved_step = self.progress.step
        return self.progress.evals_without_improvement >= self.config.patience

    def metric_columns(self) -> tuple[str, ...]:
        """The metrics.csv columns after :attr:`MetricsLog.FIELDS`: per-section-type losses, LBTW
        weights (``lbtw_alpha > 0``) and, for families with experts, their diversity and gate usage."""
        experts = diagnostic_columns(self.model.config.n_experts) if self.has_experts else ()
        return self.task_log.columns() + experts

    def _mixture_metrics(self) -> dict[str, float]:
        """Expert and gate diversity and gate usage on the first validation windows (families with
        experts; else nothing); a warning when the gates have collapsed onto one expert."""
        if not self.has_experts:
            return {}
        count = min(DIVERSITY_WINDOWS, self.val_positions[0].size)
        events, history, _, _ = (t.to(self.device) for t in
                                 self.data.validation.gather(*(p[:count] for p in self.val_positions)))
        diagnostics = mixture_diagnostics(self.model, model_input(events, history))
        warn_if_collapsed(diagnostics, f"at step {self.progress.step}")
        return flat_diagnostics(diagnostics)

    def _diverged(self, loss: float) -> TrainingDivergedError:
        """The error for a non-finite training loss at the current step."""
        lr = self.config.learning_rate(self.progress.step)
        if self.saved_step is None:
            kept, restart = "No checkpoint was saved yet.", "train again"
        else:
            kept = f"{self.out_dir}/last.pt (and best.pt) keep the weights of step {self.saved_step}."
            restart = f"train into another out_dir, starting with --init-from {self.out_dir}/best.pt"
        return TrainingDivergedError(
            f"the training loss became {loss} at step {self.progress.step + 1}: training diverged and "
            f"stopped (a learning rate too high for this model, lr {lr:g}, is the usual cause). {kept} "
            f"Lower lr in the training config and {restart}.")

    def run(self) -> Progress:
        """Train until ``max_steps`` or early stopping; returns the final counters."""
        log = MetricsLog(self.out_dir, self.resumed_step, self.metric_columns()) if self.rank == 0 else None
        if log is not None and log.set_aside is not None:
            print(f"note: {log.path} of an earlier run (without last.pt) was moved to {log.set_aside}",
                  file=sys.stderr)
        self.saved_step = self.resumed_step
        started = time.perf_counter() - self.progress.elapsed_s  # a resumed run's clock continues
        bar = tqdm(total=self.config.max_steps, initial=self.progress.step, desc="training",
                   disable=not self.show_progress, unit="step")
        running = []
        while self.progress.step < self.config.max_steps:
            if self.progress.step % self.config.eval_every == 0:
                self.balancer.start_period()
            loss = self.train_step()
            if not math.isfinite(loss):
                raise self._diverged(loss)
            running.append(loss)
            self.progress.step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{running[-1]:.4f}")
            if self.progress.step % self.config.eval_every == 0 or self.progress.step == self.config.max_steps:
                if self._evaluate_and_save(float(np.mean(running)), started, log):
                    break
                running = []
                self.task_log.start_period()
        bar.close()
        return self.progress


def train(config: TrainConfig, progress_bar: bool = True) -> Path:
    """Train a surrogate (``python -m surrogate_cell.training train``).

    Rerunning with the same ``out_dir`` resumes from ``last.pt``. An SRM's all-or-none spike
    output is then calibrated on the validation splits and written into ``best.pt`` (see
    :mod:`surrogate_cell.training.calibrate`). Under ``torchrun`` every rank calls this; rank 0
    writes the files.

    Parameters
    ----------
    config : TrainConfig
        Everything that defines the run: data set(s), model config, optimiser and schedule,
        spike sampling, robustness options of voltage-feedback models, splits, seeds, device
        (see :func:`load_train_config` for YAML files).
    progress_bar : bool, default True
        Show a progress bar (rank 0).

    Returns
    -------
    Path
        The output folder ``config.out_dir``, holding ``best.pt`` (the checkpoint with the best
        validation loss, or the lowest free-running validation RMSE with ``val_free_ms`` > 0),
        ``last.pt`` (for resuming) and ``metrics.csv`` (one row per evaluation).
    """
    trainer = Trainer(config, progress_bar)
    trainer.run()
    rank, family, show_progress = trainer.rank, trainer.family, trainer.show_progress
    del trainer  # its training windows (gigabytes for drive data) would stay in memory during calibration
    best = Path(config.out_dir) / "best.pt"
    if rank == 0 and get_family(family).calibrates_spikes and best.exists():
        from surrogate_cell.training.calibrate import calibrate_checkpoint

        calibrate_checkpoint(best, config.data, show_progress)
    if dist.is_initialized():
        dist.barrier()
    return Path(config.out_dir)


# --------------------------------------------------------------------------- command line

COMMAND_HELP = "train a surrogate model on a simulated data set"
COMMAND_DESCRIPTION = """Train a surrogate (MH, MMoE, MMoEEx or SRM) on an HDF5 data set made by `simulate`.

Settings come from a YAML training config (fields of TrainConfig): a file, or a packaged config
name such as train_small.yaml, train_default.yaml or train_mmoe.yaml. Its model: is relative to
the config file's folder or a packaged name (models/srm.yaml);
the options below override it. Rerunning the same command resumes from OUT_DIR/last.pt.
For several processes or GPUs launch with torchrun, e.g.
  torchrun --nproc_per_node 2 -m surrogate_cell.training train --config ... --data ...
"""


def add_arguments(parser) -> None:
    """Add the ``train`` options to ``parser``."""
    parser.add_argument("--config", metavar="FILE",
                        help="training config YAML (TrainConfig fields): a file or a packaged name, "
                             "e.g. train_small.yaml")
    parser.add_argument("--data", metavar="H5", help="data set made by `simulate`")
    parser.add_argument("--extra-data", dest="extra_data", nargs="+", metavar="H5",
                        help="more data sets of the same cell (e.g. another input regime) whose "
                             "training/validation simulations join those of --data")
    parser.add_argument("--out-dir", dest="out_dir", metavar="DIR",
                        help="where best.pt, last.pt and metrics.csv go")
    parser.add_argument("--model", metavar="FILE",
                        help="model config YAML: a file or a packaged name, e.g. models/mmoe.yaml")
    parser.add_argument("--init-from", dest="init_from", metavar="PT",
                        help="start from this checkpoint's weights (fine-tuning; fresh optimiser)")
    parser.add_argument("--max-steps", dest="max_steps", type=int, metavar="N", help="optimiser steps")
    parser.add_argument("--batch-size", dest="batch_size", type=int, metavar="B", help="windows per step")
    parser.add_argument("--device", help="auto (default), cpu or cuda")
    parser.add_argument("--seed", type=int, help="seed of the split, initialisation and sampling")
    parser.add_argument("--init-seed", dest="init_seed", type=int,
                        help="seed of the initialisation and sampling only (ensemble members: one split)")
    parser.add_argument("--no-progress", action="store_true", help="do not show progress bars")


def run(args) -> int:
    """Run the ``train`` subcommand; returns the exit status."""
    import sys

    overrides = {name: getattr(args, name) for name in
                 ("data", "extra_data", "out_dir", "model", "init_from", "max_steps", "batch_size", "device", "seed",
                  "init_seed")}
    try:
        config = load_train_config(args.config, **overrides)
        if not config.data:
            raise ValueError("no data set given: pass --data PATH.h5 or set 'data' in the config")
        out_dir = train(config, progress_bar=not args.no_progress)
    except (ValueError, CheckpointError, OSError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"checkpoints and metrics in {out_dir}")
    return 0
