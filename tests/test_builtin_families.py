"""The built-in metrics live in a package with a module per family (sdeval/metrics/builtin/): every declaration there
is the registered one, the registration order (the table's and `sdeval metrics`' order) is as it was when they were
one file, and asking for one metric imports its family's module alone, with no model library."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys

import pytest

import sdeval.metrics.builtin as builtin
from sdeval.metrics import registry
from sdeval.metrics.registry import MetricSpec

#: The built-ins in registration order.
ORDER = ("fid", "kid", "is", "pr", "clip", "rprecision", "cmmd", "diversity", "adherence", "robustness", "faithfulness",
         "fd_dinov2", "imagereward", "hps", "pickscore", "aesthetic", "geneval", "dsg", "tifa", "dpg", "t2i_compbench",
         "fd_clip", "fid_inf", "vendi", "vendi_inception", "dc", "sfid")  # fmt: skip


def test_the_registration_order_is_kept() -> None:
    assert tuple(registry.names()[: len(ORDER)]) == ORDER


def test_every_declaration_in_the_package_is_the_registered_one() -> None:
    declared = {}
    for module in pkgutil.iter_modules(builtin.__path__):
        loaded = importlib.import_module(f"{builtin.__name__}.{module.name}")
        declared |= {spec.name: spec for spec in vars(loaded).values() if isinstance(spec, MetricSpec)}
    assert sorted(declared) == sorted(ORDER)
    assert all(registry.get(name) is spec for name, spec in declared.items())


_PROBE = """
import json, sys
from sdeval.metrics import registry
registry.get(sys.argv[1])
heavy = ("torch", "scipy", "transformers", "open_clip")
print(json.dumps(sorted(m for m in sys.modules if m.startswith("sdeval.metrics.builtin.") or m in heavy)))
"""


@pytest.mark.parametrize(("metric", "family"), [("fid", "inception"), ("geneval", "benchmarks")])
def test_one_metric_imports_its_family_alone(metric: str, family: str) -> None:
    proc = subprocess.run([sys.executable, "-c", _PROBE, metric], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == sorted(["sdeval.metrics.builtin.cells", f"sdeval.metrics.builtin.{family}"])
