"""A model card's YAML front matter (the block between `---` lines at the top of README.md): write `model-index`
into it, keeping every other key and the card's text as they were."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from sdeval.core.atomic import write_text
from sdeval.core.errors import SdevalError
from sdeval.core.textfiles import read_user_text

_FENCE = "---"


class _Dumper(yaml.SafeDumper):
    """Every value written out where it stands: each metric's protocol shares lists with the next one's, and
    `&id001` anchors with `*id001` references would make a card no one can read."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _list(dumper: yaml.SafeDumper, items: list[Any]) -> yaml.Node:
    """A list of scalars on one line (`[220, 30, 30]`), any other list as a block."""
    flat = all(not isinstance(item, dict | list) for item in items)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=flat)


_Dumper.add_representer(list, _list)


def front_matter(metadata: dict[str, Any]) -> str:
    """`metadata` as a front matter block, keys in the order given."""
    text = yaml.dump(metadata, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)
    return f"{_FENCE}\n{text}{_FENCE}\n"


def split_card(text: str, name: str) -> tuple[dict[str, Any], str]:
    """(the card's metadata, its text after the front matter); a card without front matter has no metadata."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != _FENCE:
        return {}, text
    for i, line in enumerate(lines[1:], start=1):
        if line.strip() == _FENCE:
            try:
                metadata = yaml.safe_load("".join(lines[1:i])) or {}
            except yaml.YAMLError as err:
                raise SdevalError(f"{name}: its front matter is not valid YAML ({str(err).splitlines()[0]})") from None
            if not isinstance(metadata, dict):
                raise SdevalError(f"{name}: its front matter is not a mapping of keys")
            return metadata, "".join(lines[i + 1 :])
    raise SdevalError(f"{name}: its front matter has no closing `---` line")


def write_model_index(card: str | os.PathLike[str], index: list[dict[str, Any]], note: str = "") -> bool:
    """Set `model-index` in the card at `card` (made, with `note` as its text, when there is none); the other
    metadata and the text stay. Returns whether the card existed."""
    path = Path(card)
    existed = path.is_file()
    metadata, body = split_card(read_user_text(path, "model card"), str(path)) if existed else ({}, note)
    metadata["model-index"] = index
    write_text(path, front_matter(metadata) + body)
    return existed
