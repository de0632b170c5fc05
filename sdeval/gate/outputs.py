"""The gate's verdicts as a plain-text table, JUnit XML, Markdown and JSON."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from sdeval.gate.evaluate import GateResult
from sdeval.gate.verdicts import ERROR, FAIL, INCONCLUSIVE

_MARK = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE", "error": "ERROR"}


def render_table(result: GateResult) -> str:
    """One line per (rule, cell): verdict, cell, rule, reason; then the summary."""
    rows = [(_MARK[v.status], v.cell, v.rule.name, v.reason) for v in result.verdicts]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(("verdict", "cell", "rule"))]
    lines = [f"{'verdict':<{widths[0]}}  {'cell':<{widths[1]}}  {'rule':<{widths[2]}}  reason"]
    lines += [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  {d}" for a, b, c, d in rows]
    lines.append("")
    lines.append(result.summary())
    if result.intervals_line:
        lines.append(result.intervals_line)
    return "\n".join(lines)


def junit_xml(result: GateResult) -> str:
    """JUnit XML: one testcase per (rule, cell); a fail is <failure>, an error <error>, inconclusive <skipped>
    (JUnit has no "undecided": a skipped test neither passes nor fails a CI run, as inconclusive without --strict)."""
    suites = ET.Element("testsuites", name="sdeval gate")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name="sdeval gate",
        tests=str(len(result.verdicts)),
        failures=str(result.count(FAIL)),
        errors=str(result.count(ERROR)),
        skipped=str(result.count(INCONCLUSIVE)),
    )
    for key in ("tests", "failures", "errors", "skipped"):
        suites.set(key, suite.get(key, "0"))
    for verdict in result.verdicts:
        case = ET.SubElement(suite, "testcase", classname=f"sdeval.gate.{verdict.cell}", name=verdict.rule.name)
        tag = {FAIL: "failure", ERROR: "error", INCONCLUSIVE: "skipped"}.get(verdict.status)
        if tag is not None:
            child = ET.SubElement(case, tag, message=verdict.reason)
            if tag != "skipped":
                child.set("type", verdict.status)
                child.text = verdict.reason
        else:
            ET.SubElement(case, "system-out").text = verdict.reason
    if result.warnings:
        ET.SubElement(suite, "system-err").text = "\n".join(result.warnings)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(result: GateResult) -> str:
    lines = [
        "# sdeval gate",
        "",
        result.summary(),
        *([result.intervals_line] if result.intervals_line else []),
        "",
        "| verdict | cell | rule | reason |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| {_MARK[v.status]} | `{_md(v.cell)}` | {_md(v.rule.name)} | {_md(v.reason)} |" for v in result.verdicts
    ]
    if result.warnings:
        lines += ["", "Warnings:", ""] + [f"- {_md(w)}" for w in result.warnings]
    return "\n".join(lines) + "\n"


def json_text(result: GateResult) -> str:
    return json.dumps(result.to_json(), indent=2, allow_nan=False) + "\n"
