"""Prompt suites: the file format and its loader, built-in suites as data files, GenEval-compatible specs."""

from __future__ import annotations

from sdeval.suites.builtin import BUILTIN, builtin_path, resolve_suite_path
from sdeval.suites.load import Problem, Prompt, Suite, SuiteIdentity, check_suite, load_suite, parse_suite
from sdeval.suites.spec import CATEGORIES, RELATIONS, Spec, parse_spec

__all__ = [
    "BUILTIN",
    "CATEGORIES",
    "RELATIONS",
    "Problem",
    "Prompt",
    "Spec",
    "Suite",
    "SuiteIdentity",
    "builtin_path",
    "check_suite",
    "load_suite",
    "parse_spec",
    "parse_suite",
    "resolve_suite_path",
]
