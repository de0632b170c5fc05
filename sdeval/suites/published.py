"""Whether a suite's prompts are a benchmark's published prompt set, and which: what `sdeval suites show` says.

The prompts are compared, not the suite file: per category, the texts in order (a fingerprint: the sha256 of the
JSON list of texts), so a suite built by `sdeval suites build NAME --from FILE`, GenEval's own metadata file or a
copy of a shipped suite with other question sets is recognised when its prompts are the published ones. The
fingerprints of each shipped benchmark are recorded below (a test checks them against the shipped files), so
recognising a suite reads no other file; only a suite that differs is compared prompt by prompt with the shipped
one, to say what differs.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sdeval.suites.benchmarks import BY_ID, Benchmark, Original
from sdeval.suites.load import Prompt, Suite, load_suite

PUBLISHED = "published"
DIFFERS = "differs"
UNKNOWN = "unknown"
MISSING = "missing"  # a published category the suite lacks
EXTRA = "extra"  # a category of the suite the benchmark lacks

#: Per benchmark, per category (in file order; "" for rows without one): (prompts, fingerprint) of the published
#: prompts, as the shipped suite holds them.
FINGERPRINTS: dict[str, dict[str, tuple[int, str]]] = {
    "geneval": {
        "single_object": (80, "ee8ad08fad9a64fc0d5135f78e45ce6985b598fba4fdd9c1346fa19305c78079"),
        "two_object": (99, "ebd9268141ef42bcc0b61739c5750ee2ae7aa0b7101b57854e59c9864eabbd90"),
        "counting": (80, "4b3363c66a4a0e355745cb9ba7e144b94ea423d64247a8b791d8f2e83b649fa9"),
        "colors": (94, "1985384d79067dfc75eec14f30d757892a9c0311c6b53bbc8ac9397714b90faa"),
        "position": (100, "ea591c3688e11dce5814792acab5e0d6e7cc4983d526a1b70b49a9f5e63a5a51"),
        "color_attr": (100, "8f1a645f71369c49c3d9ec3ae2321611b950db0ddb98bd50680a83fe3f030a20"),
    },
    "partiprompts": {
        "Abstract": (51, "ddaf9558dbdef8c1b2a434eedcbc650539c50183aef71f44cc2b6999f0286a69"),
        "Vehicles": (104, "eb7c93e917f3d3c4da99424f583c0ea9b12edeb875ccea1ce2021f51c1c54e1f"),
        "Illustrations": (124, "cec82e408e6eed3aa1042e8a4c7cfbc4f55f294ecb1934c23c2362b1f322421b"),
        "Arts": (66, "3f3c1941e91d17a84fff1af73e18852668e9e7bccfce123307631aa7c8d0cc9a"),
        "World Knowledge": (214, "fd977cc550de4856fd9a9202b51d65918e0747166cbe94dfb003259794a77f40"),
        "People": (177, "697875594ea18810bbf4c6779f33110b559fe1a773df3eedb368671f46054850"),
        "Animals": (314, "7841f9307595829b8dd47b7b0761623b8705491558cd88f64a6129a3482a84a3"),
        "Artifacts": (287, "9b4152f589927dd9f4fe246501067eb3c5f3da21d6c9bf95bed3e56d38fad33e"),
        "Food & Beverage": (74, "ec373b1b714015b60e4e5dfa3e3959896c0f018c9a353d76eec2b3f4dbf527ae"),
        "Produce & Plants": (50, "a29e975f805d265e599a528b7150713ba499df0a1e5484159f878b8c82d595d7"),
        "Outdoor Scenes": (131, "ecd0e04927849fa04e3c120ee92524cc3192a4ad4f39b8d84512b41cea37d1bc"),
        "Indoor Scenes": (40, "e8fb40d1713849bed2ebb959b01ff9856cb2da113474dfe525328f91abcaf4dc"),
    },
    "t2i-compbench": {
        "color": (300, "d7ceb8baadc6ec18458b920da3f6491340f5ce250946da312c0face34407f3b8"),
        "shape": (300, "a0f05148c9e0d2feed328d79197bfdaafb3b4423e58cc3ee2f786e0c7412f3b4"),
        "texture": (300, "93d19bf7bc5807235d27f1e92be69bf6f6798de12787519153211300e4862e8d"),
        "spatial": (300, "97e9d735ebaf3260c3fc2e2f2919337cd34e4c723e904aab59c413728a59ec01"),
        "non_spatial": (300, "8ec805635a83e0e824858e8b53aa5864c446e0d5c3fcae2f9eb121fd0ad5bacf"),
        "complex": (300, "50875a6aab4f483ad0c04850ac129511510af6062bd6b5a166af1a3c061148d5"),
        "3d_spatial": (300, "6f569ebc05e5e6c67308274590f6abb4b5e4e85050bd8d02a916706254d6ab14"),
        "numeracy": (300, "946b08c832ff1e46223f8d6eabb7c3c80136af1cc3e763ea52d5d23e8ba14f0b"),
    },
    "dsg-1k": {
        "defying": (100, "9ce0592b25c5287ac6dde47e42bbb163f9f686da4d445d76f3a0c7be40ef8bbf"),
        "paragraph": (200, "12f10f5b909b9353497f825fff57d40fdea9ea368843e53c835369c6079c0b9b"),
        "pose": (100, "021ab866d817936000ee90e391c4a9f41ab0316bb021ea7f6d3cbf9fdb531093"),
        "relation": (100, "7737cd01463cc57b1276ca6c97039f5ad69d067b7bf712b8a19d7f312e749aa5"),
        "count": (100, "9dfb5ec168edc58c4756e800a550c337f7ee84fbc9e0e43c6258c10c964d628a"),
        "real_user": (200, "adf6878d0b1ec95eb647de968b0e8a19bd96712716e86181ee2bc22817d08e02"),
        "tifa": (160, "68a719a4296bc61137b560b52ea892c9d99f808985b218e816e7f635951db0f3"),
        "text": (100, "c460c61c7ef7929568e2e5631881cb793b0f196c5ce6c438672b717129437495"),
    },
    "tifa160": {
        "coco": (84, "f39e95021c7808a45b7c80d01bc23abc5cf15409dabec8f1e5ed2aac47690685"),
        "paintskill": (15, "f62a35e4278ae3e763f97b0188361d541da5741768f92bc54d15895e73eb14a5"),
        "partiprompt": (51, "2c98258c3bfed58a85215b469305109be10a54ffbc1f34470861f516a538504c"),
        "drawbench": (10, "38b8f27642b41a503b5d45c389e98984eeb50a04fcfc0377dd5fcb5635b03bcd"),
    },
    "dpg-bench": {"": (1065, "4f4cf1f409d34966ff9fde9bec8e473334d63953f61b2535d21123569d53525b")},
    "mlperf-coco2014": {"": (5000, "91aaa853e7d7c45556c6fd5c0efd480ea01275376ff2b7fd26f9ff18b86a9599")},
}


@dataclass(frozen=True)
class Version:
    """One published version of a category's prompts: the file that holds them and what it is."""

    label: str  # "" where the category has one version only
    n: int
    fingerprint: str
    note: str = ""  # what a reader must know of this version
    commit: str | None = None  # None: the benchmark's pinned source
    sha256: str | None = None
    git_object: str | None = None


#: The published versions of a category where the upstream file changed, pinned one first. T2I-CompBench's later
#: color_val.txt: Karine-Huang/T2I-CompBench at 1b7094991a57f3c22abdd4f6e8ba6c1a15517073 (blob 700badf7, the same
#: since commit 3310c2f1 of 2025-09-03), read as the conversion reads it; only its fingerprint is kept here.
VERSIONS: dict[tuple[str, str], tuple[Version, ...]] = {
    ("t2i-compbench", "color"): (
        Version(
            "before the 2025-09-03 change",
            *FINGERPRINTS["t2i-compbench"]["color"],
            note="the file every number published before then used (T2I-CompBench, T2I-CompBench++)",
        ),
        Version(
            "after the 2025-09-03 change",
            300,
            "b1c8a36e1a0954e25316b1ac27a5c672c0f6492315b565256fb0220f7e2a182c",
            note="color_227, color_228, color_271, color_287 and color_299 replaced, the repeats gone: numbers "
            "published before then used the earlier file",
            commit="3310c2f1f43cc173505fc40cf6cc70762f090c07",
            sha256="1634259756dbc77d13093d907d414480080ec9790a8c97ad09efaea7b2534f2d",
            git_object="700badf7bd0989c45eb307ff3573f127ecee0a53",
        ),
    ),
}
#: The sources that hold a benchmark's prompts where not every shipped one does (TIFA160's texts are TIFA's; DSG's
#: file only adds questions).
PROMPT_SOURCES = {"tifa160": ("human",)}


@dataclass(frozen=True)
class CategoryMatch:
    """One category of the suite (or of the published set) against the published prompts."""

    category: str  # "" for rows without one
    status: str  # published | differs | missing (published, not in the suite) | extra (in the suite only)
    n: int  # prompts in the suite
    published_n: int | None = None
    version: str | None = None  # which published version the prompts are, where the upstream file changed
    published_as: str | None = None  # the published category holding these prompts, where it is named otherwise
    detail: str = ""  # what differs

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "n": self.n, "published_n": self.published_n}
        for key in ("version", "published_as"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.detail:
            out["detail"] = self.detail
        return out

    def line(self) -> str:
        name = self.category or "(none)"
        if self.status == MISSING:
            return f"{name}: missing ({self.published_n} published prompts)"
        if self.status == EXTRA:
            return f"{name}: not a published category ({self.n} prompts)"
        if self.published_as is not None:
            return f"{name}: the published prompts of {self.published_as or '(none)'} under another name"
        if self.status == PUBLISHED:
            return f"{name}: as published" + (f" ({self.version})" if self.version else "")
        return f"{name}: {self.n} prompts (published {self.published_n}): {self.detail}"


@dataclass(frozen=True)
class Match:
    """Whether a suite's prompts are a benchmark's published ones: `published`, `differs` or `unknown`."""

    status: str
    benchmark: str | None = None
    name: str | None = None  # as the literature names it
    files: tuple[dict[str, Any], ...] = ()  # the published files the prompts were compared with
    categories: tuple[CategoryMatch, ...] = ()

    def to_json(self) -> dict[str, Any]:
        if self.status == UNKNOWN:
            return {"status": UNKNOWN, "benchmark": None}
        return {
            "status": self.status,
            "benchmark": self.benchmark,
            "name": self.name,
            "files": list(self.files),
            "categories": {c.category: c.to_json() for c in self.categories},
        }

    def lines(self) -> list[str]:
        """What `sdeval suites show` prints: a first line, then indented ones."""
        if self.status == UNKNOWN:
            return ["not a known benchmark"]
        if self.status == PUBLISHED:
            versions = "; ".join(f"{c.category}: {c.version}" for c in self.categories if c.version)
            head = [f"{self.name}: the published prompts" + (f" ({versions})" if versions else "")]
            return head + [f"  published file: {_file_line(f)}" for f in self.files]
        differing = [c for c in self.categories if c.status != PUBLISHED or c.published_as is not None]
        same = [c.category or "(none)" for c in self.categories if c not in differing]
        n = sum(c.n for c in self.categories)
        published_n = sum(c.published_n or 0 for c in self.categories)
        out = [f"differs from the published file of {self.name}"]
        out += [f"  published file: {_file_line(f)}" for f in self.files]
        out.append(f"  prompts: {n} (published {published_n})")
        out += [f"  {c.line()}" for c in differing]
        if same:
            out.append(f"  as published: {', '.join(same)}")
        return out


def _file_line(source: dict[str, Any]) -> str:
    sha = f"sha256 {source['sha256']}" if source.get("sha256") else f"git object {source.get('git_object')}"
    version = f" ({source['category']}: {source['version']}: {source['note']})" if source.get("version") else ""
    return f"{source['repo']} {source['path']} @ {source['commit']}, {sha}{version}"


def fingerprint(texts: Sequence[str]) -> str:
    """The sha256 of a list of prompt texts, in order (as compact UTF-8 JSON)."""
    return hashlib.sha256(json.dumps(list(texts), ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


def _by_category(prompts: Sequence[Prompt]) -> dict[str, list[Prompt]]:
    grouped: dict[str, list[Prompt]] = {}
    for prompt in prompts:
        grouped.setdefault(prompt.category or "", []).append(prompt)
    return grouped


def fingerprints(suite: Suite) -> dict[str, tuple[int, str]]:
    """Per category (first-seen order; "" for rows without one): (prompts, fingerprint of their texts)."""
    return {c: (len(rows), fingerprint([p.prompt for p in rows])) for c, rows in _by_category(suite.prompts).items()}


def _versions(benchmark: str, category: str) -> tuple[Version, ...]:
    pinned = FINGERPRINTS[benchmark].get(category)
    return VERSIONS.get((benchmark, category), () if pinned is None else (Version("", *pinned),))


def _version_of(benchmark: str, category: str, found: tuple[int, str]) -> Version | None:
    return next((v for v in _versions(benchmark, category) if (v.n, v.fingerprint) == found), None)


def _claims(suite: Suite, benchmark: Benchmark) -> bool:
    """A format 2 suite that names the benchmark (by id, or by one of its source files)."""
    if suite.format != 2:
        return False
    files = {(s.repo, s.path) for s in benchmark.sources}
    return suite.id == benchmark.id or any((s.get("repo"), s.get("path")) in files for s in suite.sources)


def _candidate(suite: Suite, found: dict[str, tuple[int, str]]) -> str | None:
    """The benchmark the suite is compared with: the one most of its prompts match by category (under any name),
    else the one a format 2 suite names; None when there is none."""
    best: tuple[int, str] | None = None
    for bench_id in FINGERPRINTS:
        published = {(v.n, v.fingerprint) for c in FINGERPRINTS[bench_id] for v in _versions(bench_id, c)}
        matched = sum(n for n, fp in found.values() if (n, fp) in published)
        if matched and (best is None or matched > best[0]):
            best = (matched, bench_id)
    if best is not None:
        return best[1]
    return next((b.id for b in BY_ID.values() if b.id in FINGERPRINTS and _claims(suite, b)), None)


def _files(benchmark: Benchmark, versions: dict[str, Version]) -> tuple[dict[str, Any], ...]:
    """The published files the prompts come from; a file with versions names the one the suite matched."""
    keys = PROMPT_SOURCES.get(benchmark.id)
    out = []
    for source in benchmark.sources:
        if not source.shipped or (keys is not None and source.key not in keys):
            continue
        version = versions.get(source.key)
        out.append(_file_json(source, version))
    return tuple(out)


def _file_json(source: Original, version: Version | None) -> dict[str, Any]:
    out: dict[str, Any] = {"repo": source.repo, "path": source.path, "commit": source.commit}
    out.update(sha256=source.sha256, git_object=source.git_object)
    if version is not None and version.label:
        out.update(category=source.key, version=version.label, note=version.note)
        if version.commit is not None:
            out.update(commit=version.commit, sha256=version.sha256, git_object=version.git_object)
    return out


def _difference(rows: Sequence[Prompt], published: Sequence[str]) -> str:
    """What differs between a category's prompts and the published texts (as multisets, then order)."""
    extra = Counter(p.prompt for p in rows) - Counter(published)
    missing = Counter(published) - Counter(p.prompt for p in rows)
    if not extra and not missing:
        same_order = [p.prompt for p in rows] == list(published)
        return (
            "the recorded fingerprint differs from the shipped suite"
            if same_order
            else "the same prompts in another order"
        )
    parts = []
    if extra:
        first = next(p for p in rows if p.prompt in extra)
        parts.append(f"{sum(extra.values())} not in the published file (first: id {first.id})")
    if missing:
        parts.append(f"{sum(missing.values())} published prompt(s) missing")
    return ", ".join(parts)


def match(suite: Suite) -> Match:
    """Whether `suite`'s prompts are a benchmark's published prompts, which, and what differs."""
    found = fingerprints(suite)
    bench_id = _candidate(suite, found)
    if bench_id is None:
        return Match(UNKNOWN)
    benchmark = BY_ID[bench_id]
    published = FINGERPRINTS[bench_id]
    by_fingerprint = {v.fingerprint: c for c in published for v in _versions(bench_id, c)}
    grouped = _by_category(suite.prompts)
    categories: list[CategoryMatch] = []
    versions: dict[str, Version] = {}
    texts: dict[str, list[str]] | None = None  # the shipped prompts, read only where something differs
    for category, (n, fp) in found.items():
        expected = published.get(category)
        published_n = None if expected is None else expected[0]
        version = _version_of(bench_id, category, (n, fp))
        if version is not None:
            versions[category] = version
            categories.append(CategoryMatch(category, PUBLISHED, n, published_n, version.label or None))
        elif fp in by_fingerprint:
            other = by_fingerprint[fp]
            categories.append(CategoryMatch(category, DIFFERS, n, published[other][0], published_as=other))
        elif expected is None:
            categories.append(CategoryMatch(category, EXTRA, n))
        else:
            texts = texts if texts is not None else _shipped_texts(bench_id)
            detail = _difference(grouped[category], texts.get(category, []))
            categories.append(CategoryMatch(category, DIFFERS, n, published_n, detail=detail))
    renamed = {c.published_as for c in categories if c.published_as is not None}
    categories += [
        CategoryMatch(c, MISSING, 0, n) for c, (n, _fp) in published.items() if c not in found and c not in renamed
    ]
    status = PUBLISHED if all(c.status == PUBLISHED for c in categories) else DIFFERS
    return Match(status, bench_id, benchmark.name, _files(benchmark, versions), tuple(categories))


def _shipped_texts(bench_id: str) -> dict[str, list[str]]:
    rows = _by_category(load_suite(f"builtin:{bench_id}").prompts)
    return {category: [p.prompt for p in prompts] for category, prompts in rows.items()}
