"""Intervals for every metric of a results cell, and comparisons of two cells, from the cell's per-image rows
and its rows of the feature state (see docs/statistics.md for the methods and their checks)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats as scipy_stats

from sdeval.errors import SdevalError
from sdeval.metrics.precision_recall import precision_recall
from sdeval.state import load_state
from sdeval.stats.core import (
    BOOTSTRAP,
    DEFAULT_BLOCKS,
    JACKKNIFE,
    Comparison,
    Interval,
    blocks_of,
    bootstrap_counts,
    bootstrap_p,
    group_index,
    jackknife_interval,
    jackknife_p,
    jackknife_se,
    percentile_interval,
    t_quantile,
    weighted_ratio,
)
from sdeval.stats.corpus import (
    FidProjection,
    KernelBlocks,
    ReferenceRoot,
    kernel_reference,
    kernel_reference_term,
    precision_hits,
    recall_leave_block_out,
)

PER_IMAGE_KEYS = ("clip", "rprecision", "adherence", "precision")
CORPUS_KEYS = ("fid", "kid", "cmmd", "recall")
PR_NEIGHBOURHOOD = 3


@dataclass
class CellState:
    """One cell's rows of a state file (in the order of its per-image rows) and the reference's features."""

    items: list[str]
    pool: np.ndarray | None = None
    logits: np.ndarray | None = None
    clip_image: np.ndarray | None = None
    cmmd_image: np.ndarray | None = None
    reference_pool: np.ndarray | None = None
    reference_cmmd_image: np.ndarray | None = None


def load_cell_states(results_path: str | Path, document: dict | None = None) -> dict[str, CellState]:
    """Each cell's CellState by cell id, from the state file the results name ({} when none was kept)."""
    results_path = Path(results_path)
    if document is None:
        from sdeval.results import load_results  # late: results pulls in the schema machinery

        document = load_results(results_path)
    entry = document.get("state") or {}
    if not entry.get("path"):
        return {}
    meta, arrays = load_state(results_path.parent / entry["path"])
    cell_ids = [cell["id"] for cell in document.get("cells", [])]
    if meta.get("cells") and list(meta["cells"]) != cell_ids:
        raise SdevalError(f"{entry['path']}: its cells {meta['cells']} are not the results' cells {cell_ids}")
    return states_from_arrays(arrays, cell_ids)


def states_from_arrays(arrays: dict[str, np.ndarray], cell_ids: list[str]) -> dict[str, CellState]:
    """Each cell's CellState from state arrays (as sdeval/state.py writes them, or as a scoring run holds them)."""
    positions = np.asarray(arrays["cell"])
    states = {}
    for position, cell_id in enumerate(cell_ids):
        rows = positions == position
        features = {
            name: arrays[name][rows] for name in ("pool", "logits", "clip_image", "cmmd_image") if name in arrays
        }
        states[cell_id] = CellState(
            items=[str(item) for item in arrays["item"][rows]],
            reference_pool=arrays.get("reference_pool"),
            reference_cmmd_image=arrays.get("reference_cmmd_image"),
            **features,
        )
    return states


# -- per-image statistics: numerators and denominators per (prompt, category) ---------------------------------


def _value(cell: dict, key: str) -> float | None:
    entry = cell.get("metrics", {}).get(key)
    value = entry.get("value") if isinstance(entry, dict) else None
    return None if value is None else float(value)


def _state_rows(state: CellState | None, items: list[str]) -> np.ndarray | None:
    """Rows of the state for `items` (None when the state does not hold every one of them)."""
    if state is None:
        return None
    where = {item: i for i, item in enumerate(state.items)}
    if any(item not in where for item in items):
        return None
    return np.array([where[item] for item in items], dtype=np.int64)


def _per_image_columns(key: str, rows: list[dict], state: CellState | None) -> tuple[np.ndarray, list[str]] | None:
    """(value per row, NaN where none; category per row) of a per-image statistic, or None when unavailable."""
    if key == "precision":
        state_rows = _state_rows(state, [row["item"] for row in rows])
        if state_rows is None or state.pool is None or state.reference_pool is None:
            return None
        hits = precision_hits(state.pool[state_rows], state.reference_pool, PR_NEIGHBOURHOOD)
        return hits.astype(np.float64), [""] * len(rows)
    column = {"clip": "clip_score", "rprecision": "rprecision_hit", "adherence": "adherence_passed"}[key]
    values = np.array([np.nan if row.get(column) is None else float(row[column]) for row in rows])
    if np.all(np.isnan(values)):
        return None
    # GenEval's overall adherence is the mean over categories; the other statistics have one category.
    categories = [(row.get("category") or "uncategorised") if key == "adherence" else "" for row in rows]
    return values, categories


def _tables(values: np.ndarray, categories: list[str], groups: np.ndarray, n_groups: int, labels: list[str]):
    """[groups, categories] sums of values and counts of rows that have one."""
    column = {label: j for j, label in enumerate(labels)}
    num = np.zeros((n_groups, len(labels)))
    den = np.zeros((n_groups, len(labels)))
    ok = ~np.isnan(values)
    cols = np.array([column[c] for c in categories], dtype=np.int64)
    np.add.at(num, (groups[ok], cols[ok]), values[ok])
    np.add.at(den, (groups[ok], cols[ok]), 1.0)
    return num, den


def _replicate_values(counts: np.ndarray, num: np.ndarray, den: np.ndarray) -> np.ndarray:
    per_category = np.stack([weighted_ratio(counts, num[:, j], den[:, j]) for j in range(num.shape[1])], axis=-1)
    with np.errstate(invalid="ignore"), np.testing.suppress_warnings() as sup:
        sup.filter(RuntimeWarning)
        return np.nanmean(per_category, axis=-1)


def _point(num: np.ndarray, den: np.ndarray) -> float:
    return float(_replicate_values(np.ones((1, num.shape[0])), num, den)[0])


# -- corpus statistics: leave-one-block-out values ----------------------------------------------------------


_ROOTS: dict[tuple, ReferenceRoot] = {}


def _root(reference: np.ndarray) -> ReferenceRoot:
    """The reference's eigen-decomposition, kept for the next call on the same reference (cells share one)."""
    ref = np.asarray(reference)
    key = (ref.shape, float(np.asarray(ref, np.float64).sum()), ref[:2].tobytes(), ref[-2:].tobytes())
    if key not in _ROOTS:
        _ROOTS.clear()  # one reference at a time: a d = 2048 root is 32 MB
        _ROOTS[key] = ReferenceRoot.from_features(ref)
    return _ROOTS[key]


def _corpus_inputs(key: str, state: CellState | None) -> tuple[np.ndarray, np.ndarray] | None:
    if state is None:
        return None
    if key in ("fid", "kid", "recall"):
        pair = state.pool, state.reference_pool
    else:
        pair = state.cmmd_image, state.reference_cmmd_image
    return None if pair[0] is None or pair[1] is None else pair  # type: ignore[return-value]


class _Corpus:
    """One side's rows of a corpus statistic: its value on all the rows, and with each block left out."""

    def __init__(self, key: str, x: np.ndarray, reference: np.ndarray, blocks: np.ndarray, k: int, seed: int):
        self.key, self.x, self.reference, self.blocks, self.k = key, x, reference, blocks, k
        if key == "fid":
            self.projection = FidProjection(x, _root(reference))
            self.leave_outs = self.projection.leave_block_out(blocks, k)
        elif key in ("kid", "cmmd"):
            self.ref_rows = kernel_reference(reference, seed)
            self.kernel = KernelBlocks(key, x, blocks, k, self.ref_rows)
            self.leave_outs = self.kernel.leave_block_out()
        else:
            self.leave_outs = recall_leave_block_out(x, reference, blocks, k, PR_NEIGHBOURHOOD)

    def value(self) -> float:
        """The statistic on all these rows, recomputed (a cell's subset-based KID is not this)."""
        if self.key == "fid":
            return self.projection.fid()
        if self.key in ("kid", "cmmd"):
            ref_term = kernel_reference_term(self.key, self.ref_rows)
            return self.kernel.value(np.ones(self.k, dtype=bool), ref_term)
        return precision_recall(self.x, self.reference, PR_NEIGHBOURHOOD)[1]


# -- public entry points ------------------------------------------------------------------------------------


def cell_intervals(
    cell: dict,
    state: CellState | None,
    *,
    level: float = 0.95,
    replicates: int = 200,
    seed: int = 0,
    blocks: int = DEFAULT_BLOCKS,
) -> dict[str, Interval]:
    """An interval for every metric of the cell that has a value and whose inputs are at hand.

    Per-image metrics (clip, rprecision, adherence, precision): percentile bootstrap over prompts. FID, KID,
    CMMD, recall: delete-a-group jackknife over `blocks` blocks of prompts, value ± t·se, the reference fixed.
    """
    rows = cell.get("per_image") or []
    items = [row["item"] for row in rows]
    groups, prompts = group_index(items)
    out: dict[str, Interval] = {}
    counts = None
    for key in PER_IMAGE_KEYS:
        if _value(cell, key) is None:
            continue
        columns = _per_image_columns(key, rows, state)
        if columns is None:
            continue
        values, categories = columns
        num, den = _tables(values, categories, groups, len(prompts), sorted(set(categories)))
        if counts is None:
            counts = bootstrap_counts(len(prompts), replicates, seed)
        out[key] = percentile_interval(_replicate_values(counts, num, den), level)
    state_rows = _state_rows(state, items)
    for key in CORPUS_KEYS:
        value = _value(cell, key)
        inputs = _corpus_inputs(key, state)
        if value is None or inputs is None or state_rows is None or len(prompts) < 2:
            continue
        block = blocks_of(groups, len(prompts), blocks, seed)
        k = int(block.max()) + 1
        corpus = _Corpus(key, inputs[0][state_rows], inputs[1], block, k, seed)
        out[key] = jackknife_interval(value, corpus.leave_outs, level)
    return out


def _comparable_keys(a_cell: dict, b_cell: dict, keys: Iterable[str] | None) -> list[str]:
    wanted = list(keys) if keys is not None else [*PER_IMAGE_KEYS, *CORPUS_KEYS]
    return [key for key in wanted if _value(a_cell, key) is not None and _value(b_cell, key) is not None]


def compare_cells(
    a_cell: dict,
    a_state: CellState | None,
    b_cell: dict,
    b_state: CellState | None,
    *,
    keys: Iterable[str] | None = None,
    level: float = 0.95,
    replicates: int = 200,
    seed: int = 0,
    blocks: int = DEFAULT_BLOCKS,
) -> dict[str, Comparison]:
    """b - a for each metric both cells have: paired on the items they share (the same resampled prompts on
    both sides, corpus metrics too) when those span at least 2 prompts, else unpaired (independent resampling).

    `a`/`b` in each Comparison are the values the difference is taken between: on the shared items when paired
    (the cells' own values when every item is shared), else the cells' values.
    """
    a_rows, b_rows = a_cell.get("per_image") or [], b_cell.get("per_image") or []
    a_items, b_items = [r["item"] for r in a_rows], [r["item"] for r in b_rows]
    b_set = set(b_items)
    shared = list(dict.fromkeys(item for item in a_items if item in b_set))
    shared_groups, shared_prompts = group_index(shared)
    paired = len(shared_prompts) >= 2
    everything = paired and len(shared) == len(a_items) == len(b_items)
    out: dict[str, Comparison] = {}
    if paired:
        a_pos = {item: i for i, item in enumerate(a_items)}
        b_pos = {item: i for i, item in enumerate(b_items)}
        a_rows = [a_rows[a_pos[item]] for item in shared]
        b_rows = [b_rows[b_pos[item]] for item in shared]
        a_items = b_items = shared
    a_groups, a_prompts = (shared_groups, shared_prompts) if paired else group_index(a_items)
    b_groups, b_prompts = (shared_groups, shared_prompts) if paired else group_index(b_items)
    for key in _comparable_keys(a_cell, b_cell, keys):
        if key in PER_IMAGE_KEYS:
            a_cols = _per_image_columns(key, a_rows, a_state)
            b_cols = _per_image_columns(key, b_rows, b_state)
            if a_cols is None or b_cols is None:
                continue
            labels = sorted(set(a_cols[1]) | set(b_cols[1]))
            a_num, a_den = _tables(*a_cols, a_groups, len(a_prompts), labels)
            b_num, b_den = _tables(*b_cols, b_groups, len(b_prompts), labels)
            a_counts = bootstrap_counts(len(a_prompts), replicates, seed)
            b_counts = a_counts if paired else bootstrap_counts(len(b_prompts), replicates, seed + 1)
            diffs = _replicate_values(b_counts, b_num, b_den) - _replicate_values(a_counts, a_num, a_den)
            a_value, b_value = _point(a_num, a_den), _point(b_num, b_den)
            difference = b_value - a_value
            how = f"{BOOTSTRAP}, {'paired on shared items' if paired else 'unpaired (independent resampling)'}"
            out[key] = Comparison(
                key, a_value, b_value, difference, percentile_interval(diffs, level, how),
                bootstrap_p(difference, diffs), paired, len(shared), how,
            )  # fmt: skip
            continue
        a_inputs, b_inputs = _corpus_inputs(key, a_state), _corpus_inputs(key, b_state)
        a_state_rows, b_state_rows = _state_rows(a_state, a_items), _state_rows(b_state, b_items)
        if a_inputs is None or b_inputs is None or a_state_rows is None or b_state_rows is None:
            continue
        if min(len(a_prompts), len(b_prompts)) < 2:
            continue
        a_block = blocks_of(a_groups, len(a_prompts), blocks, seed)
        b_block = a_block if paired else blocks_of(b_groups, len(b_prompts), blocks, seed + 1)
        ka, kb = int(a_block.max()) + 1, int(b_block.max()) + 1
        a_side = _Corpus(key, a_inputs[0][a_state_rows], a_inputs[1], a_block, ka, seed)
        b_side = _Corpus(key, b_inputs[0][b_state_rows], b_inputs[1], b_block, kb, seed)
        if everything or not paired:
            a_value, b_value = _value(a_cell, key), _value(b_cell, key)
        else:
            a_value, b_value = a_side.value(), b_side.value()
        difference = float(b_value - a_value)
        if paired:
            how = f"{JACKKNIFE}, paired on shared items"
            leave = b_side.leave_outs - a_side.leave_outs
            interval = jackknife_interval(difference, leave, level, how)
            p_value = jackknife_p(difference, leave)
        else:
            how = f"{JACKKNIFE}, unpaired (independent blocks)"
            se = float(np.hypot(jackknife_se(a_side.leave_outs), jackknife_se(b_side.leave_outs)))
            df = min(ka, kb) - 1
            half = t_quantile(level, df) * se
            interval = Interval(difference - half, difference + half, level, f"{how} (K={ka}, {kb})")
            p_value = float(2.0 * scipy_stats.t.sf(abs(difference) / se, df)) if se > 0 else float(difference == 0)
        out[key] = Comparison(key, a_value, b_value, difference, interval, p_value, paired, len(shared), how)
    return out


def annotate_intervals(
    document: dict, states: dict[str, CellState], *, level: float = 0.95, replicates: int = 200, seed: int = 0
) -> None:
    """Write each metric's interval into its entry (`interval`: low, high, level, method), cell by cell; metrics
    whose inputs are missing get none."""
    for cell in document["cells"]:
        for key, interval in cell_intervals(cell, states.get(cell["id"]), level=level, replicates=replicates,
                                            seed=seed).items():  # fmt: skip
            cell["metrics"][key]["interval"] = interval.to_json()
