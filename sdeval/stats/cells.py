"""Intervals for every metric of a results cell, and comparisons of two cells, from the cell's per-image rows
and its rows of the feature state (see docs/statistics.md for the methods and their checks).

Which method a metric gets, and from which per-image column or state arrays, is declared with its result key in
the metric registry (`ResultKey.interval`): nothing here names a metric.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# scipy is imported where it runs: `sdeval report --help` reaches this module, and scipy takes half a second
# to import.
import numpy as np

from sdeval.core.errors import SdevalError
from sdeval.metrics import registry
from sdeval.metrics.estimators import (
    DEFAULT_BLOCKS,
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
    prompt_of,
    t_quantile,
)
from sdeval.metrics.registry import Bootstrap, Jackknife, ResultKey
from sdeval.results.state import load_state

#: State arrays that are not per-row features.
_ROW_KEYS = ("cell", "item", "sha256")
REFERENCE_PREFIX = "reference_"


class CellState:
    """One cell's rows of a state file (in the order of its per-image rows) and the reference's features.

    `arrays` holds each per-row feature (`pool`, `clip_image`, ...) and each reference array (`reference_pool`,
    ...); features can also be given by name: CellState(items, pool=..., reference_pool=...).
    """

    def __init__(self, items: list[str], arrays: dict[str, np.ndarray] | None = None, **named: Any) -> None:
        self.items = list(items)
        self.arrays = {k: v for k, v in {**(arrays or {}), **named}.items() if v is not None}

    def __getattr__(self, name: str) -> np.ndarray | None:
        """A feature by name (`state.pool`), None when the state has none of it."""
        if name.startswith("_") or name in ("items", "arrays"):
            raise AttributeError(name)
        return self.__dict__.get("arrays", {}).get(name)

    def __repr__(self) -> str:
        return f"CellState({len(self.items)} items, arrays: {', '.join(self.arrays) or 'none'})"

    def inputs(self, names: Iterable[str | None], rows: np.ndarray) -> dict[str, np.ndarray] | None:
        """The named arrays, per-row ones at `rows` and reference ones whole (None when one is missing)."""
        out = {}
        for name in names:
            if name is None:  # a statistic of the rows alone names no reference
                continue
            values = self.arrays.get(name)
            if values is None:
                return None
            out[name] = values if name.startswith(REFERENCE_PREFIX) else values[rows]
        return out


def load_cell_states(results_path: str | Path, document: dict | None = None) -> dict[str, CellState]:
    """Each cell's CellState by cell id, from the state file the results name ({} when none was kept)."""
    results_path = Path(results_path)
    if document is None:
        from sdeval.results.document import load_results  # late: results pulls in the schema machinery

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
    """Each cell's CellState from state arrays (as sdeval/results/state.py writes them, or a scoring run holds them)."""
    positions = np.asarray(arrays["cell"])
    reference = {name: values for name, values in arrays.items() if name.startswith(REFERENCE_PREFIX)}
    features = [name for name in arrays if name not in _ROW_KEYS and not name.startswith(REFERENCE_PREFIX)]
    states = {}
    for position, cell_id in enumerate(cell_ids):
        rows = positions == position
        per_row = {name: arrays[name][rows] for name in features}
        states[cell_id] = CellState([str(item) for item in arrays["item"][rows]], {**per_row, **reference})
    return states


# -- per-image statistics: numerators and denominators per (prompt, group) ------------------------------------


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


def _per_image_columns(
    method: Bootstrap, rows: list[dict], state: CellState | None
) -> tuple[np.ndarray, list[str]] | None:
    """(value per row, NaN where none; group per row) of a per-image statistic, or None when unavailable."""
    if method.column is not None:
        values = np.array([np.nan if row.get(method.column) is None else float(row[method.column]) for row in rows])
    else:
        state_rows = _state_rows(state, [row["item"] for row in rows])
        inputs = None if state is None or state_rows is None else state.inputs(method.state_inputs, state_rows)
        if inputs is None or method.from_state is None:
            return None
        values = np.asarray(method.from_state(inputs), dtype=np.float64)
    if len(values) == 0 or np.all(np.isnan(values)):
        return None
    groups = [(row.get(method.by) or method.by_default) if method.by else "" for row in rows]
    return values, groups


def _tables(values: np.ndarray, categories: list[str], groups: np.ndarray, n_groups: int, labels: list[str]):
    """[prompts, groups] sums of values and counts of rows that have one."""
    column = {label: j for j, label in enumerate(labels)}
    num = np.zeros((n_groups, len(labels)))
    den = np.zeros((n_groups, len(labels)))
    ok = ~np.isnan(values)
    cols = np.array([column[c] for c in categories], dtype=np.int64)
    np.add.at(num, (groups[ok], cols[ok]), values[ok])
    np.add.at(den, (groups[ok], cols[ok]), 1.0)
    return num, den


def _replicate_values(counts: np.ndarray, num: np.ndarray, den: np.ndarray, weight: str = "image") -> np.ndarray:
    """Per replicate (row of `counts`, prompt multiplicities): the mean over groups of each group's mean, pooled
    over images (`image`) or over prompts with each prompt's own mean counting once (`prompt`)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if weight == "prompt":
            has = den > 0
            per_prompt = np.where(has, num / np.where(has, den, 1.0), 0.0)
            per_group = (counts @ per_prompt) / (counts @ has.astype(np.float64))
        else:
            per_group = (counts @ num) / (counts @ den)
    with np.errstate(invalid="ignore"), np.testing.suppress_warnings() as sup:
        sup.filter(RuntimeWarning)
        return np.nanmean(per_group, axis=-1)


def _point(num: np.ndarray, den: np.ndarray, weight: str) -> float:
    return float(_replicate_values(np.ones((1, num.shape[0])), num, den, weight)[0])


def _declared(key: str) -> ResultKey | None:
    declared = registry.result_key(key)
    return declared if declared is not None and declared.interval is not None else None


def _checked(declared: ResultKey, interval: Interval, n_prompts: int) -> Interval:
    """The interval cut to the key's range, with a note where it was cut or where there are too few prompts for the
    method's checked coverage."""
    notes = []
    method = declared.interval
    assert method is not None
    if n_prompts < method.min_prompts:
        notes.append(
            f"{n_prompts} prompts: the {method.name} was checked from {method.min_prompts} prompts up; "
            "treat this interval as indicative"
        )
    low, high = declared.clip(interval.low, interval.high)
    if (low, high) != (interval.low, interval.high):
        floor, ceiling = ("" if b is None else f"{b:g}" for b in declared.range)
        notes.append(f"cut to the range of {declared.key} [{floor}, {ceiling}]")
    return Interval(low, high, interval.level, interval.method, "; ".join(notes) or None)


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
    """An interval for every metric of the cell that has a value, declares an interval method, and whose inputs
    are at hand: a percentile bootstrap over prompts for per-image statistics, a delete-a-group jackknife over
    `blocks` blocks of prompts (value ± t·se, the reference fixed) for corpus statistics. Each is cut to the key's
    declared range; `note` says so, and says when there are fewer prompts than the method was checked with."""
    rows = cell.get("per_image") or []
    items = [row["item"] for row in rows]
    groups, prompts = group_index(items)
    out: dict[str, Interval] = {}
    counts = None
    state_rows = _state_rows(state, items)
    for key in cell.get("metrics", {}):
        declared, value = _declared(key), _value(cell, key)
        if declared is None or value is None:
            continue
        method = declared.interval
        found = None
        n_prompts = len(prompts)
        if isinstance(method, Bootstrap):
            columns = _per_image_columns(method, rows, state)
            if columns is None:
                continue
            values, categories = columns
            own = _clusters(method, rows)
            if own is None:
                if counts is None:
                    counts = bootstrap_counts(len(prompts), replicates, seed)
                num, den = _tables(values, categories, groups, len(prompts), sorted(set(categories)))
                draws = counts
            else:  # its own prompts, so its own draws
                n_prompts = len(own[1])
                num, den = _tables(values, categories, own[0], n_prompts, sorted(set(categories)))
                draws = bootstrap_counts(n_prompts, replicates, seed)
            found = percentile_interval(_replicate_values(draws, num, den, method.weight), level, method.name)
        elif isinstance(method, Jackknife):
            inputs = None if state is None or state_rows is None else state.inputs(method.inputs, state_rows)
            if inputs is None or len(prompts) < 2:
                continue
            block = blocks_of(groups, len(prompts), blocks, seed)
            k = int(block.max()) + 1
            leave_outs = _side(method, inputs, block, k, seed, cell, key).leave_outs
            found = jackknife_interval(value, leave_outs, level, method.name)  # the side (GBs at 50k) is gone
        if found is not None:
            out[key] = _checked(declared, found, n_prompts)
    return out


def _clusters(method: Bootstrap, rows: list[dict]) -> tuple[np.ndarray, list[str]] | None:
    """(prompt of each row, the distinct prompts) by the method's `cluster` column, a row without a value keeping its
    item's prompt; None when the method resamples the items' prompts."""
    if method.cluster is None:
        return None
    found: dict[tuple[str, str], int] = {}
    keys = [
        ("cluster", str(row[method.cluster]))
        if row.get(method.cluster) is not None
        else ("item", prompt_of(row["item"]))
        for row in rows
    ]
    index = np.array([found.setdefault(key, len(found)) for key in keys], dtype=np.int64)
    return index, [text for _, text in found]


def _side(
    method: Jackknife, inputs: dict[str, np.ndarray], block: np.ndarray, k: int, seed: int, cell: dict, key: str
) -> Any:
    """The statistic's jackknife side over the rows `inputs` holds (no reference for a statistic of the rows alone),
    with the metric's parameters as the cell's protocol recorded them (Jackknife.reads)."""
    x, ref = method.inputs
    spec = registry.spec_of_key(key)
    own = (cell.get("protocol") or {}).get(spec.name) if spec is not None else None
    parameters = method.parameters(own if isinstance(own, dict) else None)
    return method.side(inputs[x], None if ref is None else inputs[ref], block, k, seed, **parameters)


def _comparable_keys(a_cell: dict, b_cell: dict, keys: Iterable[str] | None) -> list[str]:
    wanted = list(keys) if keys is not None else list(dict.fromkeys([*a_cell["metrics"], *b_cell["metrics"]]))
    return [
        key
        for key in wanted
        if _declared(key) is not None and _value(a_cell, key) is not None and _value(b_cell, key) is not None
    ]


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
    by_prompt = {
        key: _by_prompt(key, a_rows, a_state, b_rows, b_state, level, replicates, seed)
        for key in _comparable_keys(a_cell, b_cell, keys)
        if getattr(registry.result_key(key).interval, "pair_by", "item") == "prompt"  # pyright: ignore[reportOptionalMemberAccess]  # _comparable_keys keeps only registered keys
    }
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
    sides = _Sides(a_cell, b_cell, a_groups, a_prompts, b_groups, b_prompts, paired, everything)
    for key in _comparable_keys(a_cell, b_cell, keys):
        method = registry.result_key(key).interval  # pyright: ignore[reportOptionalMemberAccess]  # _comparable_keys keeps only registered keys
        assert method is not None  # _comparable_keys keeps only keys with an interval method
        prompt_paired = by_prompt.get(key)
        if prompt_paired is not None:
            out[key] = prompt_paired
            continue
        if isinstance(method, Bootstrap):
            found = sides.bootstrap(key, method, a_rows, a_state, b_rows, b_state, level, replicates, seed)
        else:
            found = sides.jackknife(key, method, a_state, a_items, b_state, b_items, level, blocks, seed)
        if found is not None:
            out[key] = Comparison(key, *found[:5], paired, len(shared), found[5])
    return out


def _by_prompt(key, a_rows, a_state, b_rows, b_state, level, replicates, seed) -> Comparison | None:
    """b - a of a per-image statistic paired on the prompts both cells have (each side's images of a prompt, however
    many seeds): the same resampled prompts on both sides. None when they share fewer than 2 prompts (then the
    comparison is unpaired, as for any other statistic)."""
    method = registry.result_key(key).interval  # pyright: ignore[reportOptionalMemberAccess]  # _comparable_keys keeps only registered keys
    assert isinstance(method, Bootstrap)
    b_prompts = {prompt_of(r["item"]) for r in b_rows}
    shared = list(dict.fromkeys(p for p in (prompt_of(r["item"]) for r in a_rows) if p in b_prompts))
    if len(shared) < 2:
        return None
    position = {p: i for i, p in enumerate(shared)}
    a_rows = [r for r in a_rows if prompt_of(r["item"]) in position]
    b_rows = [r for r in b_rows if prompt_of(r["item"]) in position]
    a_cols, b_cols = _per_image_columns(method, a_rows, a_state), _per_image_columns(method, b_rows, b_state)
    if a_cols is None or b_cols is None:
        return None
    labels = sorted(set(a_cols[1]) | set(b_cols[1]))
    a_groups = np.array([position[prompt_of(r["item"])] for r in a_rows], dtype=np.int64)
    b_groups = np.array([position[prompt_of(r["item"])] for r in b_rows], dtype=np.int64)
    a_num, a_den = _tables(*a_cols, a_groups, len(shared), labels)
    b_num, b_den = _tables(*b_cols, b_groups, len(shared), labels)
    counts = bootstrap_counts(len(shared), replicates, seed)
    w = method.weight
    diffs = _replicate_values(counts, b_num, b_den, w) - _replicate_values(counts, a_num, a_den, w)
    a_value, b_value = _point(a_num, a_den, w), _point(b_num, b_den, w)
    difference = b_value - a_value
    how = f"{method.name}, paired on shared prompts"
    interval = percentile_interval(diffs, level, how)
    n = min(len(a_rows), len(b_rows))
    return Comparison(key, a_value, b_value, difference, interval, bootstrap_p(difference, diffs), True, n, how)


@dataclass
class _Sides:
    """The two cells of a comparison, grouped into prompts (shared ones when paired)."""

    a_cell: dict
    b_cell: dict
    a_groups: np.ndarray
    a_prompts: list[str]
    b_groups: np.ndarray
    b_prompts: list[str]
    paired: bool
    everything: bool

    def _how(self, name: str, unpaired: str) -> str:
        return f"{name}, {'paired on shared items' if self.paired else unpaired}"

    def bootstrap(self, key, method: Bootstrap, a_rows, a_state, b_rows, b_state, level, replicates, seed):
        """(a, b, difference, interval, p, how) of a per-image statistic, or None without its inputs."""
        a_cols = _per_image_columns(method, a_rows, a_state)
        b_cols = _per_image_columns(method, b_rows, b_state)
        if a_cols is None or b_cols is None:
            return None
        labels = sorted(set(a_cols[1]) | set(b_cols[1]))
        a_groups, a_prompts, b_groups, b_prompts = self.a_groups, self.a_prompts, self.b_groups, self.b_prompts
        if not self.paired:  # each side's own prompts, as its interval has them
            a_groups, a_prompts = _clusters(method, a_rows) or (a_groups, a_prompts)
            b_groups, b_prompts = _clusters(method, b_rows) or (b_groups, b_prompts)
        a_num, a_den = _tables(*a_cols, a_groups, len(a_prompts), labels)
        b_num, b_den = _tables(*b_cols, b_groups, len(b_prompts), labels)
        a_counts = bootstrap_counts(len(a_prompts), replicates, seed)
        b_counts = a_counts if self.paired else bootstrap_counts(len(b_prompts), replicates, seed + 1)
        weight = method.weight
        diffs = _replicate_values(b_counts, b_num, b_den, weight) - _replicate_values(a_counts, a_num, a_den, weight)
        a_value, b_value = _point(a_num, a_den, weight), _point(b_num, b_den, weight)
        difference = b_value - a_value
        how = self._how(method.name, "unpaired (independent resampling)")
        interval = percentile_interval(diffs, level, how)
        return (a_value, b_value, difference, interval, bootstrap_p(difference, diffs), how)

    def jackknife(self, key, method: Jackknife, a_state, a_items, b_state, b_items, level, blocks, seed):
        """(a, b, difference, interval, p, how) of a corpus statistic, or None without its inputs."""
        a_state_rows, b_state_rows = _state_rows(a_state, a_items), _state_rows(b_state, b_items)
        a_in = None if a_state_rows is None else a_state.inputs(method.inputs, a_state_rows)
        b_in = None if b_state_rows is None else b_state.inputs(method.inputs, b_state_rows)
        if a_in is None or b_in is None or min(len(self.a_prompts), len(self.b_prompts)) < 2:
            return None
        a_block = blocks_of(self.a_groups, len(self.a_prompts), blocks, seed)
        b_block = a_block if self.paired else blocks_of(self.b_groups, len(self.b_prompts), blocks, seed + 1)
        ka, kb = int(a_block.max()) + 1, int(b_block.max()) + 1
        a_side = _side(method, a_in, a_block, ka, seed, self.a_cell, key)
        b_side = _side(method, b_in, b_block, kb, seed, self.b_cell, key)
        if self.everything or not self.paired:
            a_value, b_value = _value(self.a_cell, key), _value(self.b_cell, key)
        else:
            a_value, b_value = a_side.value(), b_side.value()
        difference = float(b_value - a_value)  # pyright: ignore[reportOperatorIssue]  # both cells have the metric (_comparable_keys)
        if self.paired:
            how = self._how(method.name, "")
            leave = b_side.leave_outs - a_side.leave_outs
            return (a_value, b_value, difference, jackknife_interval(difference, leave, level, how),
                    jackknife_p(difference, leave), how)  # fmt: skip
        how = f"{method.name}, unpaired (independent blocks)"
        se = float(np.hypot(jackknife_se(a_side.leave_outs), jackknife_se(b_side.leave_outs)))
        df = min(ka, kb) - 1
        half = t_quantile(level, df) * se
        interval = Interval(difference - half, difference + half, level, f"{how} (K={ka}, {kb})")
        from scipy import stats as scipy_stats  # at call time (see the imports above)

        p_value = float(2.0 * scipy_stats.t.sf(abs(difference) / se, df)) if se > 0 else float(difference == 0)
        return (a_value, b_value, difference, interval, p_value, how)


def annotate_intervals(
    document: dict,
    states: dict[str, CellState],
    *,
    level: float = 0.95,
    replicates: int = 200,
    seed: int = 0,
    blocks: int = DEFAULT_BLOCKS,
) -> None:
    """Write each metric's interval into its entry (`interval`: low, high, level, method, and `note` where it was
    cut to the metric's range or rests on few prompts), cell by cell; metrics whose inputs are missing get none.
    Each note also goes into the cell's warnings."""
    for cell in document["cells"]:
        found = cell_intervals(
            cell, states.get(cell["id"]), level=level, replicates=replicates, seed=seed, blocks=blocks
        )
        for key, interval in found.items():
            cell["metrics"][key]["interval"] = interval.to_json()
            if interval.note:
                cell.setdefault("warnings", []).append(f"{key} interval: {interval.note}")
