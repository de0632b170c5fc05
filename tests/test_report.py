"""`sdeval report`: the page and summary from tiny shapes runs, escaping, protocol banner, gate, significance
marks on the calibration world, and a headless-Chromium check that the page is self-contained."""

from __future__ import annotations

import base64
import contextlib
import importlib.resources
import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import generate_and_judge, write_shapes_run
from markupsafe import escape

from sdeval.cli import main
from sdeval.report import ReportOptions, build_report

XSS = "<script>alert(1)</script>"


def _suite_rows(per_category: int) -> list[dict[str, Any]]:
    """The first prompts of each category of the built-in shapes suite; `colors` prompts (those the faulty
    checkpoint fails, so they are among its worst) carry a script tag."""
    text = importlib.resources.files("sdeval.suites.data").joinpath("shapes.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines()[1:] if line.strip()]
    by_category: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_category.setdefault(row["category"], []).append(row)
    chosen = [row for members in by_category.values() for row in members[:per_category]]
    for row in chosen:
        if row["category"] == "colors":
            row["prompt"] = f"{XSS} {row['prompt']}"
    return chosen


@pytest.fixture(scope="module")
def shapes_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated and scored shapes run: `clean` and `colours` (colour mistakes at 0.5), 2 seeds per prompt."""
    folder = tmp_path_factory.mktemp("shapes-run")
    config = write_shapes_run(folder, _suite_rows(20), seeds_per_prompt=2, batch_size=8)
    out = generate_and_judge(config, folder / "results.json", metrics="adherence,robustness")
    return out


@pytest.fixture(scope="module")
def report(shapes_results: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "r"
    result = CliRunner().invoke(main, ["report", str(shapes_results), "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def _cells_of(html: str, table_id: str) -> dict[str, list[str]]:
    """{row label: [the class attribute of each value cell]} of one table of the page."""
    table = re.search(rf'<table[^>]*id="{table_id}".*?</table>', html, re.S)
    assert table is not None, table_id
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", table.group(0), re.S):
        label = re.search(r"<td[^>]*>(.*?)(?:<| )", row)
        if label:
            rows[label.group(1)] = re.findall(r'<td class="num ?([^"]*)"', row)
    return rows


def test_report_files_and_sections(report: Path) -> None:
    html = (report / "index.html").read_text(encoding="utf-8")
    for section in ('id="summary"', 'id="adherence"', 'id="robustness"', 'id="grid"', 'id="worst"', 'id="protocol"'):
        assert section in html
    assert "Holm" in html and "All cells share one binding protocol" in html
    thumbs = sorted((report / "thumbs").glob("*.jpg"))
    assert thumbs and all(f'src="thumbs/{t.name}"' in html for t in thumbs)
    # Nothing on the page points anywhere but itself, its thumbnails and data URIs.
    for url in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert url.startswith(("thumbs/", "data:")), url
    assert "http://" not in html.replace("http-equiv", "") and "https://" not in html
    summary = (report / "summary.md").read_text(encoding="utf-8")
    assert "| clean/" in summary and "★" in summary and "Holm" in summary


def test_user_strings_are_escaped(report: Path) -> None:
    html = (report / "index.html").read_text(encoding="utf-8")
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script>") == 1  # the page's own script only
    summary = (report / "summary.md").read_text(encoding="utf-8")
    assert "<script" not in summary


def test_thumbnails_are_reused(shapes_results: Path, report: Path, tmp_path: Path) -> None:
    out = tmp_path / "again"
    shutil.copytree(report / "thumbs", out / "thumbs")
    written = build_report([shapes_results], out, ReportOptions(quiet=True))
    assert written["thumbnails"]["made"] == 0 and written["thumbnails"]["reused"] > 0


def test_calibration_significance_is_exactly_the_injected_fault(report: Path) -> None:
    """`colours` draws wrong colours on half the `colors` prompts and nothing else: that category (and the
    overall adherence) differs significantly, every other category is marked not significantly different."""
    html = (report / "index.html").read_text(encoding="utf-8")
    header = re.search(r'<table[^>]*id="category-table".*?</thead>', html, re.S).group(0)
    categories = re.findall(r"<th>([a-z_]+)</th>", header)[1:]  # after the "cell" column
    rows = _cells_of(html, "category-table")
    clean = next(v for k, v in rows.items() if k.startswith("clean/"))
    colours = next(v for k, v in rows.items() if k.startswith("colours/"))
    assert all(status == "best" for status in clean)
    marks = dict(zip(categories, colours, strict=True))
    assert marks.pop("colors") == "worse"
    assert marks and all(status == "tie" for status in marks.values()), marks
    summary = _cells_of(html, "summary-table")
    adherence = {k.split("/")[0]: v[1] for k, v in summary.items()}  # [images, adherence, robustness]
    assert adherence == {"clean": "best", "colours": "worse"}


def _variant(results: Path, folder: Path, name: str, change: Any) -> Path:
    document = json.loads(results.read_text(encoding="utf-8"))
    change(document)
    out = folder / name
    out.write_text(json.dumps(document), encoding="utf-8")
    return out


def test_banner_when_protocols_differ_and_gate_verdict(shapes_results: Path, tmp_path: Path) -> None:
    def other_suite(document: dict[str, Any]) -> None:
        for cell in document["cells"]:
            cell["protocol"]["suite"]["version"] = "2"
            cell["metrics"]["adherence"]["interval"] = {"low": 0.1, "high": 0.2, "level": 0.95, "method": "given"}

    changed = _variant(shapes_results, tmp_path, "later.json", other_suite)
    gate = tmp_path / "gate.json"
    gate.write_text(json.dumps(_gate_document("pass", "fail")))
    out = tmp_path / "r"
    result = CliRunner().invoke(
        main, ["report", str(shapes_results), str(changed), "-o", str(out), "--gate", str(gate), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    html = (out / "index.html").read_text(encoding="utf-8")
    assert 'id="not-comparable"' in html and "<code>suite.version</code>" in html
    assert "results: clean/" in html and "later: clean/" in html  # the same cell ids, named by their file
    assert "[0.1, 0.2]" in html  # an interval the document carries is shown as it is
    assert 'id="gate"' in html and "<strong>FAIL</strong>" in html and XSS not in html
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "**Not comparable:**" in summary and "**Gate: FAIL**" in summary and "<script" not in summary


def test_no_interval_without_feature_state(shapes_results: Path, tmp_path: Path) -> None:
    def fid_without_state(document: dict[str, Any]) -> None:
        document["state"] = {"path": None, "reason": "removed"}
        for cell in document["cells"]:
            cell["metrics"]["fid"] = {"value": 10.0 + len(cell["id"]) % 3, "n": 10, "n_reference": 10}

    changed = _variant(shapes_results, tmp_path, "nostate.json", fid_without_state)
    build_report([changed], tmp_path / "r", ReportOptions(quiet=True))
    html = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    assert "no interval: no feature state" in html and "not tested" in html


# -- the page in a real browser ------------------------------------------------------------------------------------


def _chromium() -> str | None:
    return next((shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None)


class _DevTools:
    """A minimal DevTools-protocol client over one page target's websocket."""

    def __init__(self, url: str) -> None:
        import websocket

        self.socket = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            assert time.monotonic() < deadline, f"no {method}"
            self.events.append(json.loads(self.socket.recv()))

    def drain(self, seconds: float) -> None:
        self.socket.settimeout(0.2)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.events.append(json.loads(self.socket.recv()))
            except Exception:  # a receive timeout: nothing more yet
                continue


@contextlib.contextmanager
def _browser(tmp_path: Path, width: int, height: int) -> Iterator[_DevTools]:
    """Headless Chromium at `width` x `height`, its page target's DevTools client (skips without chromium)."""
    binary = _chromium()
    if binary is None:
        pytest.skip("no chromium binary (Debian's `chromium` package; .ci/run installs it)")
    pytest.importorskip("websocket", reason="websocket-client is not installed (the `test` extra)")
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)
    args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0", "--no-first-run",
            f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"]  # fmt: skip
    process = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        port = None
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line and process.poll() is not None:
                break
            found = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            port = int(found.group(1)) if found else None
        if port is None:
            pytest.skip("chromium did not start a DevTools endpoint in this environment")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            targets = json.loads(response.read())
        page = next(t for t in targets if t["type"] == "page")
        tools = _DevTools(page["webSocketDebuggerUrl"])
        for domain in ("Page", "Network", "Runtime", "Log"):
            tools.call(f"{domain}.enable")
        yield tools
    finally:
        process.terminate()
        process.wait(timeout=10)


def _open(tools: _DevTools, page: Path) -> None:
    tools.call("Page.navigate", url=page.resolve().as_uri())
    tools.wait_for("Page.loadEventFired")


def test_page_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    with _browser(tmp_path, 1280, 2000) as tools:
        _open(tools, report / "index.html")
        # Click a thumbnail: the overlay opens with it.
        opened = tools.call(
            "Runtime.evaluate",
            expression="document.querySelector('img.thumb').click(); "
            "document.getElementById('overlay').classList.contains('open')",
            returnByValue=True,
        )
        assert opened["result"]["value"] is True
        tools.call("Runtime.evaluate", expression="document.querySelector('#summary-table th').click()")
        tools.drain(1.0)
        state = tools.call(
            "Runtime.evaluate",
            returnByValue=True,
            # Thumbnails below the fold load lazily: count the ones that loaded and the ones that failed.
            expression="JSON.stringify({text: document.body.innerText, "
            "broken: Array.from(document.images).filter(i => i.getAttribute('src') && i.complete "
            "&& i.naturalWidth === 0).length, "
            "loaded: Array.from(document.querySelectorAll('img.thumb')).filter(i => i.naturalWidth > 0).length})",
        )
        page_state = json.loads(state["result"]["value"])
        shot = tools.call("Page.captureScreenshot", format="png")
        (tmp_path / "report.png").write_bytes(base64.b64decode(shot["data"]))
        assert (tmp_path / "report.png").stat().st_size > 10_000
    methods = [e.get("method") for e in tools.events]
    assert "Page.javascriptDialogOpening" not in methods  # the prompt's <script> never ran
    assert XSS in page_state["text"]  # ... and reads as text
    assert page_state["broken"] == 0 and page_state["loaded"] > 0
    errors = [e["params"] for e in tools.events if e.get("method") == "Runtime.exceptionThrown"]
    errors += [e["params"] for e in tools.events if e.get("method") == "Runtime.consoleAPICalled"
               and e["params"]["type"] in ("error", "warning", "assert")]  # fmt: skip
    errors += [e["params"] for e in tools.events if e.get("method") == "Log.entryAdded"
               and e["params"]["entry"]["level"] in ("error", "warning")]  # fmt: skip
    assert not errors, errors
    requests = [e["params"]["request"]["url"] for e in tools.events if e.get("method") == "Network.requestWillBeSent"]
    folder = report.resolve().as_uri()
    outside = [url for url in requests if not url.startswith((folder + "/", "data:"))]
    assert not outside, outside
    assert any(url.endswith(".jpg") for url in requests)  # the watch did see the page's own loads


# -- issue 15: run labels, gate files, output folders, sweeps per run and group, images without prompt ids ---------


def _copy_run(results: Path, folder: Path, change: Any = None) -> Path:
    """`folder/results.json` (and its feature state), as each bench writes it; `change` edits the document."""
    folder.mkdir(parents=True, exist_ok=True)
    document = json.loads(results.read_text(encoding="utf-8"))
    state = (document.get("state") or {}).get("path")
    if state:
        shutil.copy(results.parent / state, folder / state)
    if change is not None:
        change(document)
    out = folder / "results.json"
    out.write_text(json.dumps(document), encoding="utf-8")
    return out


def test_runs_with_the_same_file_name_are_labelled_by_their_folder(shapes_results: Path, tmp_path: Path) -> None:
    a, b = _copy_run(shapes_results, tmp_path / "a"), _copy_run(shapes_results, tmp_path / "b")
    out = tmp_path / "r"
    result = CliRunner().invoke(main, ["report", str(a), str(b), "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    html = (out / "index.html").read_text(encoding="utf-8")
    summary = (out / "summary.md").read_text(encoding="utf-8")
    for run in ("a", "b"):
        assert f'<td class="label">{run}: clean/' in html and f'<th class="label">{run}: colours/' in html
        assert f"| {run}: clean/" in summary
    # --label names the runs instead, one per file, in order.
    labelled = tmp_path / "labelled"
    args = ["report", str(a), str(b), "--label", "before", "--label", "after", "-o", str(labelled), "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    html = (labelled / "index.html").read_text(encoding="utf-8")
    assert '<td class="label">before: clean/' in html and '<td class="label">after: clean/' in html
    # One --label for two files, and the same file twice, are refused in one line.
    result = CliRunner().invoke(main, ["report", str(a), str(b), "--label", "x", "-o", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--label" in result.output and len(result.output.strip().splitlines()) == 1
    twice = ["report", str(a), str(tmp_path / "a" / ".." / "a" / "results.json"), "-o", str(tmp_path / "y")]
    result = CliRunner().invoke(main, twice)
    assert result.exit_code == 2 and "same results file" in result.output


def test_run_labels_use_only_the_path_parts_they_need(tmp_path: Path) -> None:
    from sdeval.report.load import run_labels

    def paths(*names: str) -> list[Path]:
        return [tmp_path / name for name in names]

    assert run_labels(paths("x/base.json", "x/later.json")) == ["base", "later"]
    assert run_labels(paths("a/results.json", "b/results.json")) == ["a", "b"]
    assert run_labels(paths("x/a/results.json", "y/a/results.json", "y/b/results.json")) == ["x/a", "y/a", "y/b"]
    assert run_labels(paths("a/results.json", "b/results.json", "b/other.json")) == [
        "a/results",
        "b/results",
        "b/other",
    ]


def _gate_document(*statuses: str) -> dict[str, Any]:
    """A verdict file as `sdeval gate --json` writes it, one verdict per status."""
    verdicts = []
    for index, status in enumerate(statuses, start=1):
        name = f"adherence max_decrease 0.05 #{index}"
        rule = {"index": index, "line": index + 1, "metric": "adherence", "name": name}
        verdicts.append(
            {
                "rule": rule,
                "cell": "clean/default",
                "status": status,
                "reason": f"{XSS} reason {index}",
                "value": 0.123456789 if status != "error" else None,
                "baseline_cell": "clean/default",
                "difference": -0.0123456789,
                "interval": {"low": -0.0456789123, "high": 0.0212345678, "level": 0.95, "method": "bootstrap"},
                "n": 40,
                "paired": True,
            }
        )
    counts = {s: statuses.count(s) for s in ("pass", "fail", "inconclusive", "error")}
    return {"format": "sdeval.gate", "format_version": 1, "summary": counts, "verdicts": verdicts, "warnings": []}


def test_gate_verdict_follows_the_gate(tmp_path: Path) -> None:
    from sdeval.report.gate import read_gate

    expected = {
        ("pass", "fail", "error", "inconclusive"): "ERROR",  # as GateResult.exit_code: an error outranks a fail
        ("pass", "fail", "inconclusive"): "FAIL",
        ("pass", "inconclusive"): "INCONCLUSIVE",
        ("pass", "pass"): "PASS",
    }
    for statuses, verdict in expected.items():
        path = tmp_path / "gate.json"
        path.write_text(json.dumps(_gate_document(*statuses)), encoding="utf-8")
        gate = read_gate(path)
        assert gate["verdict"] == verdict, statuses
        row = gate["rows"][0]
        assert row["verdict"] == "PASS" and row["rule"] == "adherence max_decrease 0.05 #1"
        assert row["value"] == "0.1235" and row["evidence"] == "-0.01235 [-0.04568, 0.02123]"


def test_gate_section_reads_a_gate_json_file(shapes_results: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - {metric: adherence, min: 0.95}\n  - {metric: adherence, max_decrease: 0.05}\n", encoding="utf-8"
    )
    gate = tmp_path / "gate.json"
    args = ["gate", str(shapes_results), "--rules", str(rules), "--baseline", str(shapes_results), "--json", str(gate)]
    gated = CliRunner().invoke(main, args)
    assert gated.exit_code in (0, 1), gated.output
    document = json.loads(gate.read_text(encoding="utf-8"))
    word = "FAIL" if document["summary"]["fail"] else "PASS"
    out = tmp_path / "r"
    result = CliRunner().invoke(main, ["report", str(shapes_results), "-o", str(out), "--gate", str(gate), "--quiet"])
    assert result.exit_code == 0, result.output
    html = (out / "index.html").read_text(encoding="utf-8")
    section = html[html.index('id="gate"') : html.index('id="overlay"')]
    assert f"<strong>{word}</strong>" in section and "unknown" not in section
    assert "null" not in section and "{" not in section  # no raw JSON
    assert "adherence min 0.95" in section and "adherence max_decrease 0.05" in section
    numbers = re.findall(r"\d+\.\d+", re.sub(r"<[^>]+>", " ", section))
    assert numbers and all(len(n.replace(".", "").lstrip("0")) <= 4 for n in numbers), numbers
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert f"**Gate: {word}**" in summary and "| adherence min 0.95 |" in summary and "null" not in summary
    # A file that is not a gate verdict: one line naming it.
    result = CliRunner().invoke(main, ["report", str(shapes_results), "-o", str(out), "--gate", str(shapes_results)])
    assert result.exit_code == 2 and str(shapes_results) in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_unusable_output_folder_is_one_line_before_any_work(shapes_results: Path) -> None:
    result = CliRunner().invoke(main, ["report", str(shapes_results), "-o", "/proc/sdeval-report", "--quiet"])
    assert result.exit_code == 2, result.output
    assert "--out" in result.output and len(result.output.strip().splitlines()) == 1


def test_a_failed_report_leaves_no_folders(shapes_results: Path, tmp_path: Path, monkeypatch: Any) -> None:
    import sdeval.report.render as render

    out = tmp_path / "new" / "deeper" / "r"
    bad_gate = tmp_path / "gate.json"
    bad_gate.write_text("{}", encoding="utf-8")
    result = CliRunner().invoke(main, ["report", str(shapes_results), "-o", str(out), "--gate", str(bad_gate)])
    assert result.exit_code == 2 and not (tmp_path / "new").exists()

    def broken(name: str) -> str:
        raise RuntimeError("rendering failed")

    monkeypatch.setattr(render, "_static", broken)  # fails after the thumbnails are made
    with pytest.raises(RuntimeError):
        build_report([shapes_results], out, ReportOptions(quiet=True))
    assert not (tmp_path / "new").exists()


def test_pages_are_replaced_not_written_into(shapes_results: Path, tmp_path: Path) -> None:
    """index.html and summary.md are written to a temp file and renamed over the old ones: a reader (here a hard
    link to the old page) never sees a half-written page."""
    out = tmp_path / "r"
    out.mkdir()
    for name in ("index.html", "summary.md"):
        (out / name).write_text("old", encoding="utf-8")
        (tmp_path / f"{name}.link").hardlink_to(out / name)
    build_report([shapes_results], out, ReportOptions(quiet=True))
    for name in ("index.html", "summary.md"):
        assert (tmp_path / f"{name}.link").read_text(encoding="utf-8") == "old"
        assert (out / name).read_text(encoding="utf-8") != "old"


def _swept(document: dict[str, Any]) -> None:
    """Give each cell a guidance scale and FID / CLIP values, so the report draws a sweep."""
    for index, cell in enumerate(document["cells"]):
        cell["setting"] = {"id": f"g{3 + 4 * index}", "values": {"guidance_scale": 3.0 + 4 * index}}
        cell["metrics"]["fid"] = {"value": 20.0 - index, "n": 10, "n_reference": 10}
        cell["metrics"]["clip"] = {"value": 25.0 + index, "n": 10}


def test_sweep_plots_are_split_by_run_and_protocol_group(shapes_results: Path, tmp_path: Path) -> None:
    def later(document: dict[str, Any]) -> None:
        _swept(document)
        for cell in document["cells"]:
            cell["protocol"]["suite"]["version"] = "2"

    a = _copy_run(shapes_results, tmp_path / "a", _swept)
    b = _copy_run(shapes_results, tmp_path / "b", later)
    c = _copy_run(shapes_results, tmp_path / "c", _swept)
    out = tmp_path / "r"
    result = CliRunner().invoke(main, ["report", str(a), str(b), str(c), "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    html = (out / "index.html").read_text(encoding="utf-8")
    titles = re.findall(r"<h2>((?:Trade-off|Metrics) over [^<]*)</h2>", html)
    assert sorted(titles) == sorted(
        f"{kind} over guidance_scale (run {run}, protocol group {group})"
        for kind in ("Trade-off", "Metrics")
        for run, group in (("a", 1), ("b", 2), ("c", 1))
    ), titles


def test_images_are_shown_without_prompt_ids(shapes_results: Path, tmp_path: Path) -> None:
    def no_prompt_ids(document: dict[str, Any]) -> None:
        document["state"] = {"path": None, "reason": "removed"}
        for cell in document["cells"]:
            for row in cell["per_image"]:
                row["prompt_id"], row["item"] = None, f"path:{row['path']}"

    changed = _variant(shapes_results, tmp_path, "noids.json", no_prompt_ids)
    out = tmp_path / "r"
    build_report([changed], out, ReportOptions(quiet=True))
    html = (out / "index.html").read_text(encoding="utf-8")
    grid = html[html.index('id="grid"') : html.index('id="worst"')]
    worst = html[html.index('id="worst"') : html.index('id="protocol"')]
    assert grid.count('class="thumb"') >= 2 and worst.count('class="thumb"') >= 1
    assert "&lt;script&gt;" in worst  # grouped by prompt text: the failing `colors` prompts are named


def test_grid_prefers_prompts_where_the_cells_differ(shapes_results: Path) -> None:
    from sdeval.report.gallery import image_grid
    from sdeval.report.load import load_cells

    cells, _ = load_cells([shapes_results], ReportOptions(quiet=True))
    firsts: dict[str, dict[str, bool]] = {}
    for cell in cells:
        for row in cell.data["per_image"]:
            if row["seed_index"] == 0:
                firsts.setdefault(row["prompt_id"], {})[cell.label] = row["adherence_passed"]
    differing = {pid for pid, passes in firsts.items() if len(set(passes.values())) > 1}
    grid = image_grid(cells)
    assert len(differing) >= len(grid) > 0
    assert all(row["prompt_id"] in differing for row in grid)


def test_worst_prompts_list_only_prompts_that_failed(shapes_results: Path, tmp_path: Path) -> None:
    from sdeval.report.gallery import worst_prompts
    from sdeval.report.load import load_cells

    cells, _ = load_cells([shapes_results], ReportOptions(quiet=True))
    blocks = worst_prompts(cells)
    assert blocks and all(float(p["score"]) < 1 for block in blocks for p in block["prompts"])

    def all_pass(document: dict[str, Any]) -> None:
        for cell in document["cells"]:
            for row in cell["per_image"]:
                row["adherence_passed"], row["adherence_failed"] = True, []

    changed = _variant(shapes_results, tmp_path, "allpass.json", all_pass)
    out = tmp_path / "r"
    build_report([changed], out, ReportOptions(quiet=True))
    html = (out / "index.html").read_text(encoding="utf-8")
    worst = html[html.index('id="worst"') : html.index('id="protocol"')]
    assert "No prompt failed" in worst and 'class="thumb"' not in worst


def test_report_command_lives_in_its_package() -> None:
    from sdeval.report.command import report_command

    assert main.commands["report"] is report_command
    source = importlib.resources.files("sdeval").joinpath("cli.py").read_text(encoding="utf-8")
    assert "def report_command" not in source


# -- issue 21: comparability per metric, the gate on top, near-zero values, empty columns, a 1400 px page --------


def _reference(digit: str) -> Any:
    """A change giving every cell an FID (no interval) against the reference whose images hash to `digit` * 64."""

    def change(document: dict[str, Any]) -> None:
        for index, cell in enumerate(document["cells"]):
            cell["protocol"]["reference"] = {"source": "ref.npz", "n": 10, "images_sha256": digit * 64}
            cell["metrics"]["fid"] = {"value": 20.0 + index + int(digit), "n": 10, "n_reference": 10}

    return change


def _column_statuses(html: str, table_id: str, column: int) -> dict[str, str]:
    """{cell label: the status class of one value column} of a table of the page (labels of several runs)."""
    table = re.search(rf'<table[^>]*id="{table_id}".*?</table>', html, re.S).group(0)
    out = {}
    for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)[1:]:
        label = re.sub(r"<[^>]+>|\s*\(group \d+\)", "", re.search(r"<td[^>]*>(.*?)</td>", row, re.S).group(1))
        out[label] = re.findall(r'<td class="num ?([^"]*)"', row)[column]
    return out


def test_comparability_is_judged_per_metric(shapes_results: Path, tmp_path: Path) -> None:
    """Two runs that differ only in the FID reference: FID is compared within each run's group, adherence across
    both runs, and the banner names the reference for FID only."""
    a = _copy_run(shapes_results, tmp_path / "a", _reference("1"))
    b = _copy_run(shapes_results, tmp_path / "b", _reference("2"))
    out = tmp_path / "r"
    result = CliRunner().invoke(main, ["report", str(a), str(b), "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    html = (out / "index.html").read_text(encoding="utf-8")
    banner = html[html.index('id="not-comparable"') : html.index('id="summary"')]
    assert "<strong>FID</strong>: group 1 vs group 2 (<code>reference.images_sha256</code>)" in banner
    assert "Adherence, Seed robustness (pass@1): comparable across all cells." in banner
    assert banner.count("<code>") == 1  # no field that binds no metric shown (the suite, the seed) is named
    # [images, FID, adherence, robustness]; FID has no feature state to test with: the others are "untested".
    fid = {k.split("/")[0]: v for k, v in _column_statuses(html, "summary-table", 1).items()}
    adherence = {k.split("/")[0]: v for k, v in _column_statuses(html, "summary-table", 2).items()}
    assert fid == {"a: clean": "best", "a: colours": "untested", "b: clean": "best", "b: colours": "untested"}
    # One group for adherence: one best across both runs (the same images score the same: a tie).
    assert adherence == {"a: clean": "best", "a: colours": "worse", "b: clean": "tie", "b: colours": "worse"}
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "> - **FID**: group 1 vs group 2 (`reference.images_sha256`)" in summary
    # The protocol card says which metrics the field moves.
    card = html[html.index('id="protocol-table"') :]
    assert "moves FID" in card


def test_gate_verdict_tops_the_page_and_its_rows_name_their_run(shapes_results: Path, tmp_path: Path) -> None:
    a, b = _copy_run(shapes_results, tmp_path / "a"), _copy_run(shapes_results, tmp_path / "b")
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {metric: adherence, max_decrease: 0.05}\n", encoding="utf-8")
    gate = tmp_path / "gate.json"
    gated = CliRunner().invoke(main, ["gate", str(b), "--rules", str(rules), "--baseline", str(a), "--json", str(gate)])
    assert gated.exit_code == 0, gated.output
    recorded = json.loads(gate.read_text(encoding="utf-8"))
    assert recorded["results"]["path"] == str(b) and recorded["baseline"]["path"] == str(a)
    out = tmp_path / "r"
    result = CliRunner().invoke(main, ["report", str(a), str(b), "-o", str(out), "--gate", str(gate), "--quiet"])
    assert result.exit_code == 0, result.output
    html = (out / "index.html").read_text(encoding="utf-8")
    top = html[html.index('id="gate-verdict"') : html.index('id="summary"')]
    assert "<strong>Gate: PASS</strong>" in top and "(2 checks: 2 pass, 0 fail, 0 inconclusive, 0 error;" in top
    assert html.index('id="gate-verdict"') < html.index('id="not-comparable"' if 'id="not-comparable"' in html
                                                        else 'id="summary"')  # fmt: skip
    section = html[html.index('id="gate"') : html.index('id="overlay"')]
    cells = re.findall(r'<td class="label">(.*?)</td>', section)
    assert cells and all(c.startswith("b: ") and "(baseline a: " in c for c in cells), cells
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert summary.index("**Gate: PASS**") < summary.index("| cell |") and "| b: clean/" in summary
    # A gate file that does not name its results file (an older sdeval's): the page says so.
    old = tmp_path / "old-gate.json"
    old.write_text(json.dumps({k: v for k, v in recorded.items() if k not in ("results", "baseline")}))
    result = CliRunner().invoke(main, ["report", str(a), str(b), "-o", str(out), "--gate", str(old), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "does not name the results file it checked" in (out / "index.html").read_text(encoding="utf-8")


def test_near_zero_values_read_zero(shapes_results: Path, tmp_path: Path) -> None:
    from sdeval.report.formatting import fmt as _fmt

    assert [_fmt(v) for v in (1.48e-16, -3e-13, 0.0, 1e-9, 0.001234)] == ["0", "0", "0", "1e-09", "0.001234"]

    def identical_images(document: dict[str, Any]) -> None:
        for cell in document["cells"]:
            interval = {"low": -2.2e-17, "high": 3.1e-16, "level": 0.95, "method": "given"}
            cell["metrics"]["diversity"] = {"value": 1.48e-16, "n_prompts": 60, "interval": interval}

    changed = _variant(shapes_results, tmp_path, "same.json", identical_images)
    build_report([changed], tmp_path / "r", ReportOptions(quiet=True))
    html = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    summary = (tmp_path / "r" / "summary.md").read_text(encoding="utf-8")
    assert "e-16" not in html.replace('data-sort="1.48e-16"', "") and "e-16" not in summary and "e-17" not in summary
    assert '<span class="ci">[0, 0]</span>' in html and "0 [0, 0]" in summary


def test_columns_with_no_values_are_hidden(report: Path, tmp_path: Path) -> None:
    from sdeval.report.gate import read_gate

    html = (report / "index.html").read_text(encoding="utf-8")
    robustness = html[html.index('id="robustness"') : html.index('id="grid"')]
    assert "pass@1" in robustness and "CLIP std across seeds" not in robustness  # no CLIP model in this run
    header = re.search(r'<table[^>]*id="summary-table".*?</thead>', html, re.S).group(0)
    assert "<th>checkpoint</th>" not in header and "<th>setting</th>" not in header  # the cell ids say both
    errors = _gate_document("error", "error")
    for verdict in errors["verdicts"]:
        for key in ("value", "difference", "interval"):
            verdict.pop(key)
    path = tmp_path / "gate.json"
    path.write_text(json.dumps(errors), encoding="utf-8")
    assert read_gate(path)["columns"] == ["reason"]


def test_crowded_trade_off_labels_do_not_overlap() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sdeval.report.plots import _overlap, label_points

    figure, axes = plt.subplots(figsize=(6.4, 4.4))
    points = [(25.0 + 0.0004 * i, 20.0 + 0.002 * (i % 3), f"{3 + 2 * (i % 4):g}") for i in range(10)]
    axes.plot([p[0] for p in points], [p[1] for p in points], marker="o")
    axes.plot([24.9, 25.1], [19.5, 20.5])  # wide limits: the points crowd together
    renderer = figure.canvas.get_renderer()
    notes = label_points(figure, axes, points)
    boxes = [note.get_window_extent(renderer) for note in notes]
    assert len(boxes) == len(points)
    assert all(_overlap(a, b) == 0 for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    # The same labels at one fixed offset (as they were placed before) would cover each other.
    fixed = [axes.annotate(t, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8) for x, y, t in points]
    fixed_boxes = [note.get_window_extent(renderer) for note in fixed]
    assert any(_overlap(a, b) > 0 for i, a in enumerate(fixed_boxes) for b in fixed_boxes[i + 1 :])
    plt.close(figure)


def _seven_cells(document: dict[str, Any]) -> None:
    """Seven cells with long ids, every built-in scalar metric with an interval, a diversity of rounding noise."""
    document["state"] = {"path": None, "reason": "removed"}
    template = document["cells"]
    cells = []
    for index in range(7):
        cell = json.loads(json.dumps(template[index % len(template)]))
        checkpoint = f"sd15-finetune-epoch{index:02d}"
        cell["id"] = f"{checkpoint}/g{3 + index}.5-s50-default-512x512-fp16"
        cell["checkpoint"]["name"] = checkpoint
        cell["setting"] = {"id": f"g{3 + index}.5-s50-default-512x512-fp16", "values": {"guidance_scale": 3.5 + index}}
        for key, value in (("fid", 21.3456), ("kid", 0.012345), ("is", 3.4567), ("precision", 0.61234),
                           ("recall", 0.51234), ("clip", 25.1234), ("rprecision", 0.81234), ("cmmd", 0.31234),
                           ("diversity", 0.21234 if index else 1.48e-16)):  # fmt: skip
            value += index * value / 100
            interval = {"low": value * 0.95, "high": value * 1.05, "level": 0.95, "method": "given"}
            cell["metrics"][key] = {"value": value, "n": 120, "interval": interval}
        cells.append(cell)
    document["cells"] = cells


def test_a_seven_cell_report_fits_1400_px(shapes_results: Path, tmp_path: Path) -> None:
    changed = _variant(shapes_results, tmp_path, "seven.json", _seven_cells)
    gate = tmp_path / "gate.json"
    gate.write_text(json.dumps(_gate_document("pass", "fail", "inconclusive")), encoding="utf-8")
    out = tmp_path / "r"
    build_report([changed], out, ReportOptions(quiet=True, gate=gate))
    with _browser(tmp_path, 1400, 1000) as tools:
        _open(tools, out / "index.html")
        measured = tools.call(
            "Runtime.evaluate",
            returnByValue=True,
            expression="JSON.stringify({width: window.innerWidth, scroll: document.scrollingElement.scrollWidth, "
            "columns: document.querySelectorAll('#summary-table thead th').length})",
        )
        shot = tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        (tmp_path / "seven.png").write_bytes(base64.b64decode(shot["data"]))
    found = json.loads(measured["result"]["value"])
    assert found["width"] == 1400 and found["columns"] == 2 + 9 + 2  # cell, images, 9 metrics, adherence, robustness
    assert found["scroll"] <= 1400, found


def test_report_modules_import_one_way() -> None:
    """The report's modules (load, model, tables, gallery, gate, plots, render) import each other one way, at module
    level only: no cycle, even under TYPE_CHECKING, and no sdeval import hidden inside a function."""
    import ast

    import sdeval.report

    folder = Path(sdeval.report.__file__).parent
    edges: dict[str, set[str]] = {}
    late: list[str] = []
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        inner = {
            id(node)
            for function in ast.walk(tree)
            if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
            for node in ast.walk(function)
        }
        for node in ast.walk(tree):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            for name in (n for n in names if n.startswith("sdeval.")):
                if id(node) in inner and path.name != "command.py":  # a command imports its work when it runs
                    late.append(f"{path.name}: {name}")
                if name.startswith("sdeval.report."):
                    edges.setdefault(path.stem, set()).add(name.split(".")[2])
    assert late == []

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in edges.get(start, ()))

    assert [(a, b) for a, targets in edges.items() for b in targets if reaches(b, a, {b})] == []
    assert "render" not in {t for s, targets in edges.items() if s != "__init__" for t in targets}


def test_the_protocol_card_names_the_benchmark_and_how_it_differs(shapes_results: Path, tmp_path: Path) -> None:
    """A cell scored on a built-in benchmark suite names the benchmark as the literature does and says whether its
    suite file is the published one (the shipped file's sha256); a benchmark score's block says whether it is as
    published, and every way it differs."""
    from sdeval.suites import load_suite

    geneval = load_suite("builtin:geneval")
    differs = ["judged by the shapes judge, not the Mask2Former detector and colour classifier"]

    def on_geneval(document: dict[str, Any]) -> None:
        for i, cell in enumerate(document["cells"]):
            sha256 = geneval.sha256 if i == 0 else "0" * 64  # the first cell on the shipped file, the rest a copy
            cell["protocol"]["suite"] = {"id": "geneval", "version": geneval.version, "sha256": sha256}
            cell["protocol"]["geneval"] = {"benchmark": "GenEval overall", "formula": "f", "judge": "shapes",
                                           "published_judge": "Mask2Former", "as_published": False,
                                           "differs": differs}  # fmt: skip

    changed = _variant(shapes_results, tmp_path, "geneval.json", on_geneval)
    built = build_report([changed], tmp_path / "r", ReportOptions(quiet=True))
    html = built["index"].read_text(encoding="utf-8")
    card = html[html.index('id="benchmarks"') : html.index('id="protocol-table"')]
    assert card.count(f"<strong>{geneval.name}</strong>") == 2  # one line per suite file
    assert "the published suite as sdeval ships it" in card and "not the shipped file (sha256 000000000000..." in card
    assert "<strong>GenEval overall</strong> (<code>geneval</code>)" in card and f"<li>{differs[0]}</li>" in card
    assert card.count(str(escape(geneval.notes[0]))) == 1  # its notes once, escaped as Jinja2 does
    summary = built["summary"].read_text(encoding="utf-8")
    assert f"Benchmark: **{geneval.name}** (suite geneval, version 1; " in summary
    assert f"GenEval overall (geneval): not as published: {differs[0]}." in summary
    # Suites that are not public benchmarks name none.
    plain = build_report([shapes_results], tmp_path / "plain", ReportOptions(quiet=True))
    assert 'id="benchmarks"' not in plain["index"].read_text(encoding="utf-8")
    assert "Benchmark:" not in plain["summary"].read_text(encoding="utf-8")
