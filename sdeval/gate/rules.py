"""The gate's rules file: parsed and checked with the line of every problem (docs/gate.md, "Rules").

A malformed file is one ConfigError `FILE:LINE: rule N: KEY: reason`, never a traceback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sdeval.core.errors import ConfigError
from sdeval.core.suggest import did_you_mean, unknown_key_hint, unknown_keys
from sdeval.core.textfiles import read_user_text
from sdeval.metrics.keys import known_names, lookup
from sdeval.metrics.registry import Direction

RULE_KEYS = ("metric", "min", "max", "max_increase", "max_decrease", "cell", "require_interval")
TOP_KEYS = ("rules", "pairs")
BOUNDS = ("min", "max")
REGRESSIONS = ("max_increase", "max_decrease")


@dataclass(frozen=True)
class Rule:
    """One line of the rules file: thresholds on one metric, for one cell or for every cell."""

    index: int  # 1-based position in `rules:`
    line: int  # 1-based line of its mapping in the file
    metric: str  # a result key, or KEY.PART of a key with parts (adherence.CATEGORY)
    direction: Direction
    min: float | None = None
    max: float | None = None
    max_increase: float | None = None
    max_decrease: float | None = None
    cell: str | None = None
    require_interval: bool = False

    @property
    def is_regression(self) -> bool:
        return self.max_increase is not None or self.max_decrease is not None

    @property
    def name(self) -> str:
        """`fid max 25`, `clip max_decrease 0.5 (cell a/b)`: how tables and JUnit name the rule."""
        parts = [self.metric]
        for key in (*BOUNDS, *REGRESSIONS):
            value = getattr(self, key)
            if value is not None:
                parts.append(f"{key} {value:g}")
        if self.require_interval:
            parts.append("(whole interval)")
        if self.cell is not None:
            parts.append(f"(cell {self.cell})")
        return " ".join(parts)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "line": self.line, "metric": self.metric, "name": self.name}
        for key in (*BOUNDS, *REGRESSIONS, "cell"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.require_interval:
            out["require_interval"] = True
        return out


@dataclass(frozen=True)
class Rules:
    """A parsed rules file: its rules and the candidate -> baseline cell map of `pairs:`."""

    source: str
    rules: tuple[Rule, ...]
    pairs: dict[str, str]
    pairs_line: int | None = None

    @property
    def needs_baseline(self) -> bool:
        return any(rule.is_regression for rule in self.rules)


class _Lined(dict):
    """A YAML mapping that remembers the line of itself and of each key (1-based)."""

    line: int = 0
    key_lines: dict[Any, int]


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings are _Lined: errors can point at the line a user must fix."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _Lined:
    loader.flatten_mapping(node)
    mapping = _Lined()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise ConfigError(f"line {key_node.start_mark.line + 1}: a mapping key must be a plain value") from None
        if key in mapping:  # PyYAML keeps the last silently; a doubled threshold is a typo to point at
            raise ConfigError(f"line {key_node.start_mark.line + 1}: {key}: given twice in one mapping")
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = key_node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _number(value: Any) -> float | None:
    """A finite float from a YAML number (or a number written as text, `1e-3`: YAML 1.1 reads that as text)."""
    if isinstance(value, bool):
        return None  # bool is an int subclass: `true` is no threshold
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def parse_rules(text: str, source: str = "rules.yaml") -> Rules:
    """Parse a rules file's text; every problem is a ConfigError naming `source:LINE` and the rule."""
    try:
        doc = yaml.load(text, Loader=_LineLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}{line}: not valid YAML: {err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML: {err}") from None
    except ConfigError as err:
        raise ConfigError(f"{source}:{str(err).removeprefix('line ')}") from None
    if doc is None:
        raise ConfigError(f"{source}: empty: expected a mapping with a `rules:` list")
    if not isinstance(doc, _Lined):
        raise ConfigError(f"{source}:1: expected a mapping with a `rules:` list, got a {type(doc).__name__}")
    unknown = unknown_keys(doc, TOP_KEYS)
    if unknown:  # the first one, with its line
        key = unknown[0]
        raise ConfigError(f"{source}:{doc.key_lines[key]}: unknown key {key!r}{unknown_key_hint(key, TOP_KEYS)}")
    if "rules" not in doc:
        raise ConfigError(f"{source}:{doc.line}: no `rules:` list")
    items = doc["rules"]
    rules_line = doc.key_lines["rules"]
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{source}:{rules_line}: rules: expected a non-empty list of rules")
    rules = tuple(_parse_rule(item, i, source, rules_line) for i, item in enumerate(items, start=1))
    pairs, pairs_line = _parse_pairs(doc, source)
    return Rules(source=source, rules=rules, pairs=pairs, pairs_line=pairs_line)


def _parse_rule(item: Any, index: int, source: str, rules_line: int) -> Rule:
    if not isinstance(item, _Lined):
        raise ConfigError(
            f"{source}:{rules_line}: rule {index}: expected a mapping such as {{metric: fid, max: 25}}, got {item!r}"
        )
    where = f"{source}:{item.line}: rule {index}"

    def fail(key: str, reason: str) -> ConfigError:
        return ConfigError(f"{source}:{item.key_lines.get(key, item.line)}: rule {index}: {key}: {reason}")

    unknown = unknown_keys(item, RULE_KEYS)
    if unknown:
        key, hint = unknown[0], unknown_key_hint(unknown[0], RULE_KEYS)
        raise ConfigError(f"{source}:{item.key_lines[key]}: rule {index}: unknown key {key!r}{hint}")
    if "metric" not in item:
        raise ConfigError(f"{where}: no `metric` (a result key such as fid, or KEY.PART such as adherence.counting)")
    metric = item["metric"]
    if not isinstance(metric, str) or not metric.strip():
        raise fail("metric", f"expected a metric name, got {metric!r}")
    metric = metric.strip()
    ref = lookup(metric)
    if ref is None:
        known = known_names()
        raise fail("metric", f"unknown metric {metric!r}{did_you_mean(metric, known)}; known: {', '.join(known)}")
    direction = ref.direction
    values: dict[str, float] = {}
    for key in (*BOUNDS, *REGRESSIONS):
        if key in item:
            number = _number(item[key])
            if number is None:
                raise fail(key, f"expected a number, got {item[key]!r}")
            if key in REGRESSIONS and number < 0:
                raise fail(key, f"a tolerance is not negative, got {number:g} (the rule names the direction)")
            values[key] = number
    if not values:
        raise ConfigError(f"{where}: {metric}: no threshold: give min, max, max_increase or max_decrease")
    if "min" in values and "max" in values and values["min"] > values["max"]:
        raise fail("max", f"max {values['max']:g} is below min {values['min']:g}: no value could pass")
    cell = item.get("cell")
    if "cell" in item and (not isinstance(cell, (str, int)) or isinstance(cell, bool) or str(cell) == ""):
        raise fail("cell", f"expected a cell id, got {cell!r}")
    require_interval = item.get("require_interval", False)
    if not isinstance(require_interval, bool):
        raise fail("require_interval", f"expected true or false, got {require_interval!r}")
    if require_interval and not any(key in values for key in BOUNDS):
        raise fail("require_interval", "applies to min and max; a regression rule always uses the interval")
    return Rule(
        index=index,
        line=item.line,
        metric=metric,
        direction=direction,
        cell=None if cell is None else str(cell),
        require_interval=require_interval,
        **values,
    )


def _parse_pairs(doc: _Lined, source: str) -> tuple[dict[str, str], int | None]:
    if "pairs" not in doc:
        return {}, None
    line = doc.key_lines["pairs"]
    pairs = doc["pairs"]
    if pairs is None:
        return {}, line
    if not isinstance(pairs, _Lined):
        raise ConfigError(f"{source}:{line}: pairs: expected a mapping of candidate cell id: baseline cell id")
    out: dict[str, str] = {}
    for key, value in pairs.items():
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise ConfigError(
                f"{source}:{pairs.key_lines[key]}: pairs: {key}: expected a baseline cell id, got {value!r}"
            )
        out[str(key)] = str(value)
    return out, line


def load_rules(path: str | Path) -> Rules:
    """Read and parse a rules file (a missing or unreadable file is a ConfigError naming it)."""
    path = Path(path)
    return parse_rules(read_user_text(path, "rules", ConfigError), str(path))
