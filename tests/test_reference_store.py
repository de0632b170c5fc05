"""Reference files keep the k-NN radii and the Fréchet eigen-decomposition (format version 3): stored values are the
recomputed ones bit for bit, metrics against a version 3 file equal those against its version 2 form (values and
jackknife sides) without recomputing them, a stale or changed stored array is refused with what is wrong, version 2
files still load, and merged references compute them once over the whole."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sdeval.cli import main
from sdeval.core.errors import SdevalError
from sdeval.core.npz import npz_bytes
from sdeval.metrics import density_coverage as dc
from sdeval.metrics import fid
from sdeval.metrics import precision_recall as pr
from sdeval.metrics.corpus import FidSide
from sdeval.metrics.distances import ScreenedSet
from sdeval.metrics.fid import FrechetState, ReferenceRoot, fid_from_features, reference_root
from sdeval.reference import Reference, images_hash, load_reference, merge_references, save_reference
from sdeval.reference.build import store_derived
from sdeval.reference.derived import DEFAULT_RADII_K
from sdeval.score.demo import make_image_set

KEY, POOL = "inception-test", "pool"
D = 12  # small, so a state of a few dozen rows has at least d images and its decomposition is stored


def _reference(rows: np.ndarray, names: list[str], source: str = "ref") -> Reference:
    hashes = [hashlib.sha256(name.encode()).hexdigest() for name in names]
    paths = [f"{name}.png" for name in names]
    return Reference(
        protocols={KEY: {"extractor": "inception-test"}},
        features={KEY: {POOL: rows}},
        fid_state=FrechetState.from_features(rows),
        n=len(rows),
        images_hash=images_hash(paths, hashes),
        source=source,
        image_hashes=hashes,
        image_paths=paths,
        state_rows={"pool": (KEY, POOL)},
    )


def _rows(seed: int, n: int, shift: float = 0.0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(n, D)) + shift).astype(np.float32)


def _forget() -> None:
    """No radii or root left from an earlier load: the next use computes them."""
    pr._REFERENCE_RADII.clear()
    fid._ROOTS.clear()
    dc._LAST.clear()
    pr._HITS.clear()


@pytest.fixture
def stored(tmp_path) -> dict:
    """A version 3 file with radii at k = 3, 5 and the pool state's decomposition, and its version 2 form."""
    rows = _rows(0, 60)
    reference = _reference(rows, [f"r{i:03d}" for i in range(60)])
    store_derived(reference, [(KEY, POOL)], DEFAULT_RADII_K)
    v3, v2 = tmp_path / "v3.npz", tmp_path / "v2.npz"
    save_reference(v3, reference)
    _write_version_2(v3, v2)
    _forget()
    return {"rows": rows, "v3": v3, "v2": v2, "dir": tmp_path}


def _arrays(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    return arrays, json.loads(str(arrays["meta"]))


def _write(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    path.write_bytes(npz_bytes({**arrays, "meta": np.array(json.dumps(meta))}))


def _write_version_2(v3: Path, out: Path) -> None:
    """The same reference as sdeval wrote it before stored radii and decompositions (format version 2)."""
    arrays, meta = _arrays(v3)
    old = {name: values for name, values in arrays.items() if name.startswith(("feat__", "image_"))}
    old |= {"fid_n": arrays["frechet__pool__n"], "fid_sum": arrays["frechet__pool__sum"]}
    old["fid_sum_outer"] = arrays["frechet__pool__sum_outer"]
    meta = {k: v for k, v in meta.items() if k not in ("frechet", "radii", "eigh")} | {"format_version": 2}
    _write(out, old, meta)


def _no_reference_pass(monkeypatch, reference: np.ndarray, eigh: bool = True) -> None:
    """Fail if anything computes the radii of `reference` (rows) or (with `eigh`) a d x d eigen-decomposition."""
    knn = pr.knn_radii

    def guarded(features, k, gemm: pr.Gemm = "float32"):
        rows = np.asarray(features.source if isinstance(features, ScreenedSet) else features)
        assert not np.array_equal(rows, reference), "the reference's radii were computed, not read"
        return knn(features, k, gemm)

    def no_eigh(*args, **kwargs):
        raise AssertionError("a d x d eigh was computed, not read")

    monkeypatch.setattr(pr, "knn_radii", guarded)
    if eigh:
        monkeypatch.setattr(np.linalg, "eigh", no_eigh)


def test_stored_radii_and_decomposition_are_the_recomputed_ones_bit_for_bit(stored):
    reference = load_reference(stored["v3"])
    rows = stored["rows"]
    assert sorted(r.k for r in reference.radii) == [3, 5]
    for radii in reference.radii:
        assert radii.features == (KEY, POOL) and radii.radii.dtype == np.float64
        np.testing.assert_array_equal(radii.radii, pr.knn_radii(rows, radii.k).numpy())
        np.testing.assert_array_equal(radii.radii, pr.knn_radii(rows, radii.k, "float64").numpy())
    values, vectors = np.linalg.eigh(FrechetState.from_features(rows).covariance())
    np.testing.assert_array_equal(reference.eigh["pool"].values, values)
    np.testing.assert_array_equal(reference.eigh["pool"].vectors, vectors)


def test_metrics_against_version_3_equal_version_2_without_recomputing(stored, monkeypatch):
    rows = stored["rows"]
    gen = _rows(1, 45, shift=0.2)  # more images than dimensions: FID takes the d x d route, rooted on the reference
    blocks = np.arange(len(gen)) % 5

    def everything() -> dict:
        reference = rows.copy()  # another array of the same rows, as a run's part files give them back
        ref_state = FrechetState.from_features(reference)
        side = FidSide(gen, reference, blocks, 5, 0)
        recall, recall_leave_outs = pr.recall_leave_outs(gen, reference, blocks, 5, 3)
        density = dc.DensitySide(gen, reference, blocks, 5)
        return {
            "pr": pr.precision_recall(gen, reference, 3),
            "hits": pr.precision_hits(gen, reference, 3).tolist(),
            "recall": (recall, recall_leave_outs.tolist()),
            "dc": (density.value(), density.leave_outs.tolist(), dc.CoverageSide(gen, reference, blocks, 5).value()),
            "fid": fid_from_features(gen, ref_state, reference, root=lambda: reference_root(reference)),
            "fid_side": (side.value(), side.leave_outs.tolist()),
        }

    load_reference(stored["v2"])
    as_version_2 = everything()
    _forget()
    load_reference(stored["v3"])
    with monkeypatch.context() as patch:
        _no_reference_pass(patch, rows)
        as_version_3 = everything()
    assert as_version_3 == as_version_2
    # The d x d route rooted on the reference is today's FID (rooted on the generated side) to rounding.
    legacy = fid_from_features(gen, FrechetState.from_features(rows), rows)
    assert as_version_3["fid"] == pytest.approx(legacy, rel=1e-9)


def test_version_2_files_still_load_with_nothing_stored(stored):
    old, new = load_reference(stored["v2"]), load_reference(stored["v3"])
    assert old.radii == [] and old.eigh == {} and old.frechet == {}
    assert old.fid_state is not None and new.fid_state is not None
    np.testing.assert_array_equal(old.fid_state.sum_outer, new.fid_state.sum_outer)
    np.testing.assert_array_equal(old.features[KEY][POOL], new.features[KEY][POOL])
    assert old.image_hashes == new.image_hashes


def _tampered(stored: dict, name: str, change) -> Path:
    arrays, meta = _arrays(stored["v3"])
    change(arrays, meta)
    out = stored["dir"] / f"{name}.npz"
    _write(out, arrays, meta)
    return out


def _radius_entry(meta: dict, k: int) -> dict:
    return next(entry for entry in meta["radii"] if entry["k"] == k)


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("short", lambda a, m: a.update({_radius_entry(m, 3)["array"]: a[_radius_entry(m, 3)["array"]][:-1]}),
         r"k-NN radii of pool \(inception-test\) at k=3 hold 59 values for 60 rows"),
        ("wrong-k", lambda a, m: _radius_entry(m, 3).update({"k": 4}),
         r"at k=4 do not fit the rows: row 0's distance to its k=4-th nearest other row is"),
        ("k-too-large", lambda a, m: _radius_entry(m, 3).update({"k": 60}), r"k must be 1 to 59 for 60 rows"),
        ("rule", lambda a, m: _radius_entry(m, 5).update({"distance": "cosine"}), r"were measured as 'cosine'"),
        ("rows", lambda a, m: a.update({"feat__0__pool": a["feat__0__pool"][::-1].copy()}),
         r"at k=3 were computed from other rows than the file holds now"),
        ("eigh", lambda a, m: a.update({"eigh__pool__vectors": a["eigh__pool__vectors"][:, ::-1].copy()}),
         r"eigen-decomposition of Fréchet state 'pool' does not decompose its covariance"),
        ("state", lambda a, m: a.update({"frechet__pool__sum": a["frechet__pool__sum"] + 1.0}),
         r"eigen-decomposition of Fréchet state 'pool' was made from another state"),
    ],
)  # fmt: skip
def test_a_stale_or_changed_stored_array_is_refused(stored, name, change, message):
    with pytest.raises(SdevalError, match=message):
        load_reference(_tampered(stored, name, change))


def test_the_state_must_be_of_the_rows_it_names(stored):
    def other_rows(arrays, meta):
        arrays["feat__0__pool"] = arrays["feat__0__pool"][::-1].copy()
        meta["radii"] = []  # no radii to catch it first

    with pytest.raises(SdevalError, match="Fréchet state 'pool' was accumulated from other rows"):
        load_reference(_tampered(stored, "state-rows", other_rows))


def test_merge_computes_them_once_over_the_whole_in_deterministic_bytes(tmp_path):
    names = [f"r{i:03d}" for i in range(70)]
    rows = _rows(3, 70)
    parts = []
    for index, (start, stop) in enumerate(((0, 30), (30, 70))):
        part = _reference(rows[start:stop], names[start:stop], f"part{index}")
        part.frechet["spatial"] = FrechetState.from_features(rows[start:stop, :5])  # another named state
        store_derived(part, [(KEY, POOL)], (2, 3))
        parts.append(part)
    merged = merge_references(parts, "merged").reference
    again = merge_references(parts[::-1], "merged").reference
    assert sorted(r.k for r in merged.radii) == [2, 3]
    for radii in merged.radii:
        np.testing.assert_array_equal(radii.radii, pr.knn_radii(rows, radii.k).numpy())
    assert merged.fid_state is not None
    np.testing.assert_array_equal(merged.eigh["pool"].values, np.linalg.eigh(merged.fid_state.covariance())[0])
    assert merged.frechet["spatial"].n == 70 and "spatial" in merged.eigh  # 70 rows, 5 dimensions
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    save_reference(a, merged)
    save_reference(b, again)
    assert a.read_bytes() == b.read_bytes()
    loaded = load_reference(a)
    assert loaded.frechet["spatial"].n == 70 and sorted(loaded.eigh) == ["pool", "spatial"]
    # Parts without stored radii (version 2) merge into a file without them, as before.
    for part in parts:
        part.radii = []
    assert merge_references(parts, "merged").reference.radii == []


def test_a_reference_of_fewer_images_than_dimensions_stores_no_decomposition():
    reference = _reference(_rows(4, 8), [f"r{i}" for i in range(8)])
    store_derived(reference, [(KEY, POOL)], (3, 5, 9))
    assert reference.eigh == {} and sorted(r.k for r in reference.radii) == [3, 5]  # k = 9 needs 10 rows


def test_the_stored_root_is_the_computed_one(stored):
    load_reference(stored["v3"])
    rows = stored["rows"]
    seeded = reference_root(rows)
    computed = ReferenceRoot.from_features(rows)
    np.testing.assert_array_equal(seeded.b, computed.b)
    np.testing.assert_array_equal(seeded.mean, computed.mean)
    assert seeded.trace == computed.trace


# -- through `sdeval reference build` and `sdeval score` ---------------------------------------------------------


def _run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def small_sets(tmp_path_factory, inception_weights) -> dict:
    """A 10-image reference folder built with the defaults, a 12-image folder to score, one feature cache."""
    root = tmp_path_factory.mktemp("store")
    make_image_set(root / "ref", 10, seed=7, size=40, style="spots")
    make_image_set(root / "gen", 12, seed=8, size=40)
    flags = ("--inception-weights", inception_weights, "--cache-dir", root / "cache", "--workers", 0)
    built = _run("reference", "build", root / "ref", "-o", root / "ref.npz", *flags)
    assert built.exit_code == 0, built.output
    return {"root": root, "flags": flags, "v3": root / "ref.npz"}


def test_reference_build_stores_radii_at_the_radii_k_asked(small_sets):
    default = load_reference(small_sets["v3"])
    assert sorted(r.k for r in default.radii) == [3, 5] and default.eigh == {}  # 10 images < 2048 dimensions
    out = small_sets["root"] / "k2.npz"
    root, flags = small_sets["root"], small_sets["flags"]
    built = _run("reference", "build", root / "ref", "-o", out, "--radii-k", "2", *flags)  # features from the cache
    assert built.exit_code == 0, built.output
    reference = load_reference(out)
    assert [r.k for r in reference.radii] == [2]
    rows = reference.rows(reference.radii[0].features)
    assert rows is not None
    np.testing.assert_array_equal(reference.radii[0].radii, pr.knn_radii(rows, 2).numpy())
    none = _run("reference", "build", root / "ref", "-o", root / "none.npz", "--radii-k", "none", *flags)
    assert none.exit_code == 0 and load_reference(root / "none.npz").radii == []
    bad = _run("reference", "build", root / "ref", "-o", root / "bad.npz", "--radii-k", "3,x", *flags)
    assert bad.exit_code == 2 and "--radii-k: expected positive integers" in bad.output


@pytest.mark.slow  # two scoring runs with --ci (the fast twin: test_metrics_against_version_3_equal_version_2_...)
def test_a_run_against_version_3_scores_as_against_version_2(small_sets, monkeypatch):
    """`sdeval score --ci` of one cell: precision, recall, density, coverage and FID with their intervals are the same
    against the built file and its version 2 form, and the run against the built file computes no reference radii."""
    root, flags, v3, v2 = small_sets["root"], small_sets["flags"], small_sets["v3"], small_sets["root"] / "ref-v2.npz"
    _write_version_2(v3, v2)
    (rows,) = (arrays[POOL] for arrays in load_reference(v3).features.values())
    docs = {}
    for name, reference in (("v3", v3), ("v2", v2)):
        _forget()
        with monkeypatch.context() as patch:
            if name == "v3":
                _no_reference_pass(patch, rows, eigh=False)  # 10 images < 2048 dimensions: no decomposition stored
            out = root / f"{name}.json"
            scored = _run("score", root / "gen", "-r", reference, "--metrics", "fid,pr,dc", "--ci", "-o", out, *flags)
            assert scored.exit_code == 0, scored.output
        docs[name] = json.loads(out.read_text())["cells"][0]["metrics"]
    assert {"fid", "precision", "recall", "density", "coverage"} <= set(docs["v3"])
    assert all("interval" in docs["v3"][key] for key in ("fid", "precision", "recall", "density", "coverage"))
    assert docs["v3"] == docs["v2"]


def test_a_merge_of_parts_reads_the_files_radii_instead_of_computing_them(small_sets, tmp_path, monkeypatch):
    """`score --shard` parts against a version 3 file, merged in a process that never loaded it (the caches
    cleared): the merge reads the file's stored radii (none is computed) and scores as one process does."""
    root, flags, v3 = small_sets["root"], small_sets["flags"], small_sets["v3"]
    (rows,) = (arrays[POOL] for arrays in load_reference(v3).features.values())
    options = (root / "gen", "-r", v3, "--metrics", "pr,dc", *flags)
    whole = _run("score", *options, "-o", tmp_path / "whole.json")
    assert whole.exit_code == 0, whole.output
    parts = [tmp_path / f"part{i}.json" for i in (0, 1)]
    for index, part in enumerate(parts):
        assert _run("score", *options, "--shard", f"{index}/2", "-o", part).exit_code == 0
    _forget()
    with monkeypatch.context() as patch:
        _no_reference_pass(patch, rows, eigh=False)
        merged = _run("merge", *parts, "-o", tmp_path / "merged.json")
    assert merged.exit_code == 0, merged.output
    metrics = [json.loads((tmp_path / f"{n}.json").read_text())["cells"][0]["metrics"] for n in ("whole", "merged")]
    assert {"precision", "recall", "density", "coverage"} <= set(metrics[0]) and metrics[0] == metrics[1]
