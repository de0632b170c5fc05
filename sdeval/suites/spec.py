"""What an image must contain: GenEval's metadata schema, parsed once into typed facts.

A spec row as GenEval writes it (`evaluation_metadata.jsonl`):
    {"tag": "color_attr", "include": [{"class": "car", "count": 1, "color": "red"},
                                      {"class": "bench", "count": 1, "color": "blue"}], "prompt": "..."}
    {"tag": "position", "include": [{"class": "dog", "count": 1},
                                    {"class": "cat", "count": 1, "position": ["left of", 0]}], ...}
    {"tag": "counting", "include": [{"class": "clock", "count": 2}], "exclude": [{"class": "clock", "count": 3}]}

Semantics, exactly GenEval's (implemented in sdeval/judges/rules.py): an `include` holds when at least `count`
objects of the class are found, and, when a colour is given, the `count` most confident of them all have that
colour; `position: [relation, i]` says each of those objects stands in `relation` to every object matched by
`include[i]`; an `exclude` holds when fewer than `count` objects of the class are found. An image passes when
every fact holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sdeval.core.suggest import did_you_mean

#: GenEval's category tags (the keys reports and rules use); the English names are labels only.
CATEGORIES: dict[str, str] = {
    "single_object": "single object",
    "two_object": "two objects",
    "counting": "counting",
    "colors": "colours",
    "position": "position",
    "color_attr": "colour attribution",
}
#: GenEval's relations.
RELATIONS = ("left of", "right of", "above", "below")
#: GenEval's colour vocabulary (evaluate_images.py `COLORS`): what colour facts may name and detectors classify into.
COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")


class SpecError(ValueError):
    """A spec that does not follow GenEval's schema; the message names the field. `problems` holds every problem
    found (the message is the first), so a suite check can list them all."""

    def __init__(self, *problems: str) -> None:
        super().__init__(problems[0])
        self.problems = list(problems)


def _unknown(where: str, what: str, value: str, choices: tuple[str, ...] | dict[str, str]) -> str:
    """`WHERE: must be one of WHAT (a, b, ...), got 'x' (did you mean 'y'?)`: GenEval's judges know no other word."""
    return f"{where}: must be one of {what} ({', '.join(choices)}), got {value!r}{did_you_mean(value, choices)}"


@dataclass(frozen=True)
class Include:
    """At least `count` objects of `cls` (of `color`, if given), optionally in `position` to include[index]."""

    cls: str
    count: int = 1
    color: str | None = None
    position: tuple[str, int] | None = None  # (relation, index into Spec.include)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"class": self.cls, "count": self.count}
        if self.color is not None:
            out["color"] = self.color
        if self.position is not None:
            out["position"] = [self.position[0], self.position[1]]
        return out


@dataclass(frozen=True)
class Exclude:
    """Fewer than `count` objects of `cls`."""

    cls: str
    count: int

    def to_json(self) -> dict[str, Any]:
        return {"class": self.cls, "count": self.count}


@dataclass(frozen=True)
class Spec:
    tag: str
    include: tuple[Include, ...]
    exclude: tuple[Exclude, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tag": self.tag, "include": [i.to_json() for i in self.include]}
        if self.exclude:
            out["exclude"] = [e.to_json() for e in self.exclude]
        return out

    @property
    def classes(self) -> list[str]:
        """Every class the spec names, in order, without repeats."""
        return list(dict.fromkeys([i.cls for i in self.include] + [e.cls for e in self.exclude]))


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"{where}.count: expected an integer >= 1, got {value!r}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{where}: expected a non-empty string, got {value!r}")
    return value.strip()


def parse_spec(obj: Any, where: str = "spec") -> Spec:
    """A Spec from GenEval's metadata dict (extra keys such as `prompt` are ignored); SpecError names the field.

    Tags, colours and relations must be GenEval's words: a judge would silently fail (or pass) a fact it cannot
    read; and the facts must be possible together (`contradictions`): no image passes an impossible spec, so it
    would only lower every checkpoint's score. Those problems are all collected; a malformed structure stops at
    the first.
    """
    if not isinstance(obj, dict):
        raise SpecError(f"{where}: expected an object, got {type(obj).__name__}")
    words: list[str] = []  # tags, colours, relations outside GenEval's vocabulary
    try:
        spec = _parse_spec(obj, where, words)
    except SpecError as err:
        raise SpecError(*words, *err.problems) from None
    words += contradictions(spec, where)
    if words:
        raise SpecError(*words)
    return spec


def _parse_spec(obj: dict[str, Any], where: str, words: list[str]) -> Spec:
    tag = _text(obj.get("tag"), f"{where}.tag")
    if tag not in CATEGORIES:
        words.append(_unknown(f"{where}.tag", "GenEval's tags", tag, CATEGORIES))
    raw_include = obj.get("include")
    if not isinstance(raw_include, list) or not raw_include:
        raise SpecError(f"{where}.include: expected a non-empty list")
    include: list[Include] = []
    for i, item in enumerate(raw_include):
        at = f"{where}.include[{i}]"
        if not isinstance(item, dict):
            raise SpecError(f"{at}: expected an object, got {type(item).__name__}")
        position = None
        if item.get("position") is not None:
            pos = item["position"]
            if not (isinstance(pos, (list, tuple)) and len(pos) == 2):
                raise SpecError(f"{at}.position: expected [relation, index], got {pos!r}")
            relation, index = pos
            if relation not in RELATIONS:
                hint = did_you_mean(relation, RELATIONS)
                words.append(f"{at}.position: relation must be one of {', '.join(RELATIONS)}, got {relation!r}{hint}")
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(raw_include) or index == i:
                raise SpecError(f"{at}.position: index must name another include entry, got {index!r}")
            position = (relation, index)
        cls, count, color = _text(item.get("class"), f"{at}.class"), _count(item.get("count", 1), at), item.get("color")
        if color is not None:
            color = _text(color, f"{at}.color")
            if color not in COLORS:
                words.append(_unknown(f"{at}.color", "GenEval's colours", color, COLORS))
        include.append(Include(cls=cls, count=count, color=color, position=position))
    exclude: list[Exclude] = []
    raw_exclude = obj.get("exclude") or []
    if not isinstance(raw_exclude, list):
        raise SpecError(f"{where}.exclude: expected a list")
    for i, item in enumerate(raw_exclude):
        at = f"{where}.exclude[{i}]"
        if not isinstance(item, dict):
            raise SpecError(f"{at}: expected an object, got {type(item).__name__}")
        exclude.append(Exclude(cls=_text(item.get("class"), f"{at}.class"), count=_count(item.get("count"), at)))
    return Spec(tag=tag, include=tuple(include), exclude=tuple(exclude))


# --- facts no image can hold together --------------------------------------------------------------------------
#
# Under GenEval's rules every include of a class looks at the best objects of that class, so the single best object
# of a class is judged by all of them: two colours, or a position towards its own class, can never both hold on it.
# A relation orders box centres strictly (left of: a smaller x; above: a smaller y, image coordinates), so
# relations that go round in a circle on one axis cannot all hold either.

#: relation -> (axis, whether the include's object is the smaller end of the order on that axis)
_ORDER = {"left of": ("x", True), "right of": ("x", False), "above": ("y", True), "below": ("y", False)}


def _needs(include: Include, spec: Spec) -> str:
    """What an include asks for, in words: 'at least 1 car (red, left of dog)'."""
    bits = [include.color] if include.color else []
    if include.position is not None:
        bits.append(f"{include.position[0]} {spec.include[include.position[1]].cls}")
    return f"at least {include.count} {include.cls}" + (f" ({', '.join(bits)})" if bits else "")


def contradictions(spec: Spec, where: str = "spec") -> list[str]:
    """Every set of facts of `spec` that no image can hold together, one message each, naming the fields."""
    return [*_count_conflicts(spec, where), *_colour_conflicts(spec, where), *_position_conflicts(spec, where)]


def _count_conflicts(spec: Spec, where: str) -> list[str]:
    # An include needs at least `count` objects of its class, an exclude fewer than its `count`.
    out = []
    for j, exclude in enumerate(spec.exclude):
        for i, include in enumerate(spec.include):
            if include.cls == exclude.cls and include.count >= exclude.count:
                out.append(
                    f"{where}.exclude[{j}]: fewer than {exclude.count} {exclude.cls} contradicts include[{i}], which "
                    f"needs {_needs(include, spec)}: no image can hold both"
                )
    return out


def _colour_conflicts(spec: Spec, where: str) -> list[str]:
    out = []
    first: dict[str, int] = {}  # class -> the first include that gives it a colour
    for i, include in enumerate(spec.include):
        if include.color is None:
            continue
        k = first.setdefault(include.cls, i)
        if spec.include[k].color != include.color:
            out.append(
                f"{where}.include[{i}].color: {include.color!r} contradicts include[{k}].color "
                f"{spec.include[k].color!r}: both are judged on the best {include.cls}, which has one colour"
            )
    return out


def _position_conflicts(spec: Spec, where: str) -> list[str]:
    out = []
    edges: dict[str, list[tuple[str, str, int]]] = {"x": [], "y": []}  # axis -> (smaller class, larger class, i)
    for i, include in enumerate(spec.include):
        if include.position is None:
            continue
        relation, target = include.position
        other = spec.include[target].cls
        if other == include.cls:
            out.append(
                f"{where}.include[{i}].position: {include.cls} {relation} {other} (include[{target}]) compares the "
                f"best {other} with itself: no image can hold it"
            )
            continue
        if relation not in _ORDER:  # already a problem of its own
            continue
        axis, smaller = _ORDER[relation]
        edges[axis].append((include.cls, other, i) if smaller else (other, include.cls, i))
    for axis in ("x", "y"):
        cycle = _cycle(edges[axis])
        if cycle:
            facts = ", ".join(
                f"include[{i}] ({spec.include[i].cls} {spec.include[i].position[0]} "  # pyright: ignore[reportOptionalSubscript]  # the cycle's edges come from includes with a position
                f"{spec.include[spec.include[i].position[1]].cls})"  # pyright: ignore[reportOptionalSubscript]  # the cycle's edges come from includes with a position
                for i in cycle
            )
            order = "from left to right" if axis == "x" else "from top to bottom"
            out.append(
                f"{where}.include[{cycle[-1]}].position: {facts}: no image can hold them all (they order the objects "
                f"{order} in a circle)"
            )
    return out


def _cycle(edges: list[tuple[str, str, int]]) -> list[int]:
    """The includes (in order) of the first circle of strict orders `edges` makes, or []."""
    for start, end, i in edges:
        # A path from `end` back to `start` closes a circle through edge i.
        paths: dict[str, list[int]] = {end: [i]}
        todo = [end]
        while todo:
            node = todo.pop()
            for a, b, k in edges:
                if a == node and b not in paths:
                    paths[b] = [*paths[node], k]
                    if b == start:
                        return sorted(paths[b])
                    todo.append(b)
    return []
