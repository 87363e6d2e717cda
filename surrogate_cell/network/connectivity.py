"""Drawing connections from rules, and the table of synapses they make.

Every rule draws for all cell pairs from its own random stream (network seed, rule number),
so a rank that keeps only the synapses onto its own cells holds exactly the rows a single
process would hold for those cells.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from surrogate_cell.network.config import MIN_DELAY_MS, Connection
from surrogate_cell.network.templates import CellTemplate

CONNECTION_STREAM = 1
DRIVE_STREAM = 2
PAIR_BLOCK_ENTRIES = 1 << 22
"""Cell pairs drawn per block (bounds the memory of the pair draw for large populations)."""


def stream_rng(seed: int, *key: int) -> np.random.Generator:
    """The random generator of one named stream of the network seed (independent of ranks)."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=tuple(int(k) for k in key)))


@dataclass(frozen=True)
class PopulationSpan:
    """Where a population's cells sit among all cells: global ids ``first_gid .. first_gid + n_cells - 1``."""

    first_gid: int
    n_cells: int


@dataclass
class ConnectionTable:
    """One row per synapse: presynaptic and postsynaptic cell (global ids), the segment it sits
    on, the model input channel it activates, its delay (whole ms) and whether it is inhibitory."""

    pre_gid: np.ndarray
    post_gid: np.ndarray
    segment: np.ndarray
    channel: np.ndarray
    delay_ms: np.ndarray
    inhibitory: np.ndarray

    def __len__(self) -> int:
        return int(self.pre_gid.size)

    def select(self, rows: np.ndarray) -> ConnectionTable:
        """The rows ``rows`` (index or boolean mask)."""
        return ConnectionTable(*(getattr(self, f.name)[rows] for f in fields(self)))

    @classmethod
    def empty(cls) -> ConnectionTable:
        """A table without synapses."""
        return cls(*(np.empty(0, dtype=np.int64) for _ in range(5)), np.empty(0, dtype=bool))

    @classmethod
    def concatenate(cls, tables: list[ConnectionTable]) -> ConnectionTable:
        """All rows of ``tables`` in order."""
        if not tables:
            return cls.empty()
        return cls(*(np.concatenate([getattr(t, f.name) for t in tables]) for f in fields(cls)))

    def max_delay_ms(self) -> int:
        """The longest delay (ms); 1 without synapses."""
        return int(self.delay_ms.max()) if len(self) else int(MIN_DELAY_MS)


def draw_connections(rule: Connection, rule_index: int, pre: PopulationSpan, post: PopulationSpan,
                     pre_kind: str, post_template: CellTemplate, seed: int,
                     kept_post_cells: range) -> ConnectionTable:
    """The synapses ``rule`` makes, keeping those onto post cells ``kept_post_cells`` (population indices)."""
    label = f"Connection {rule.pre!r} -> {rule.post!r}"
    segments, probabilities = post_template.target_segments(rule.targets, label)
    rng = stream_rng(seed, CONNECTION_STREAM, rule_index)
    pre_cells, post_cells = _connected_pairs(rng, pre.n_cells, post.n_cells, rule.probability)
    if rule.pre == rule.post and not rule.allow_autapses:
        distinct = pre_cells != post_cells
        pre_cells, post_cells = pre_cells[distinct], post_cells[distinct]
    pre_cells = np.repeat(pre_cells, rule.synapses_per_connection)
    post_cells = np.repeat(post_cells, rule.synapses_per_connection)
    synapse_segments = rng.choice(segments, size=pre_cells.size, p=probabilities)
    delays = _draw_delays(rng, rule, pre_cells.size)
    kept = (post_cells >= kept_post_cells.start) & (post_cells < kept_post_cells.stop)
    table = ConnectionTable(
        pre_gid=pre.first_gid + pre_cells, post_gid=post.first_gid + post_cells,
        segment=synapse_segments.astype(np.int64),
        channel=post_template.event_channels(synapse_segments, pre_kind).astype(np.int64),
        delay_ms=delays, inhibitory=np.full(pre_cells.size, pre_kind == "inh"),
    )
    return table.select(kept)


def _connected_pairs(rng: np.random.Generator, n_pre: int, n_post: int,
                     probability: float) -> tuple[np.ndarray, np.ndarray]:
    """(pre, post) indices of the pairs that connect, each with ``probability``, in row order."""
    rows_per_block = max(1, PAIR_BLOCK_ENTRIES // max(n_post, 1))
    pre_parts, post_parts = [], []
    for start in range(0, n_pre, rows_per_block):  # setup only: blocks of presynaptic cells
        rows = min(rows_per_block, n_pre - start)
        pre_index, post_index = np.nonzero(rng.random((rows, n_post)) < probability)
        pre_parts.append(pre_index + start)
        post_parts.append(post_index)
    return (np.concatenate(pre_parts).astype(np.int64), np.concatenate(post_parts).astype(np.int64))


def _draw_delays(rng: np.random.Generator, rule: Connection, n_synapses: int) -> np.ndarray:
    """Whole-ms delays >= 1 ms: normal(delay_ms, delay_std_ms), rounded to the 1 ms step."""
    delays = np.full(n_synapses, float(rule.delay_ms))
    if rule.delay_std_ms > 0:
        delays = rng.normal(rule.delay_ms, rule.delay_std_ms, n_synapses)
    return np.maximum(np.rint(delays), MIN_DELAY_MS).astype(np.int64)
