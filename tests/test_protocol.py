"""Which protocol differences make two cells incomparable (binding) and which only inform."""

from __future__ import annotations

from sdeval.results.protocol import binds, differences, flatten, is_informative

BASE = {
    "metrics": ["fid", "kid"],
    "inception": {"extractor": "inception", "weights_sha256": "aa", "preprocess": "legacy", "input_size": 299},
    "reference": {"source": "/data/ref.npz", "n": 100, "images_sha256": "rr"},
    "kid": {"subsets": 100, "subset_size": 50},
    "clip": {"model": "ViT-L-14", "open_clip_version": "2.24"},
    "seed": 2020,
    "decode": "rule",
}


def _with(path: str, value: object) -> dict:
    import copy

    doc = copy.deepcopy(BASE)
    *parents, leaf = path.split(".")
    node = doc
    for key in parents:
        node = node[key]
    node[leaf] = value
    return doc


def test_identical_protocols_have_no_differences():
    assert differences(BASE, BASE) == ([], [])


def test_what_moves_the_numbers_is_binding():
    for path, value in [
        ("inception.weights_sha256", "bb"),
        ("inception.preprocess", "clean"),
        ("reference.images_sha256", "ss"),
        ("kid.subset_size", 100),
        ("clip.model", "ViT-B-32"),
        ("seed", 1),
    ]:
        assert differences(BASE, _with(path, value)) == ([path], []), path


def test_where_and_with_what_only_informs():
    for path, value in [("reference.source", "/elsewhere/ref.npz"), ("clip.open_clip_version", "3.0")]:
        assert differences(BASE, _with(path, value)) == ([], [path]), path
    assert is_informative("versions.torch") and is_informative("device") and not is_informative("suite.sha256")


def test_a_field_present_on_one_side_only_is_a_difference_and_new_fields_are_binding():
    other = _with("judge", {"name": "owlv2", "threshold": 0.3})
    assert differences(BASE, other) == (["judge.name", "judge.threshold"], [])
    assert flatten({"a": {"b": 1, "c": {}}}) == {"a.b": 1, "a.c": {}}


def test_a_binding_field_binds_the_metrics_of_its_block_only():
    """The reference moves FID, not adherence; the judge moves adherence, not FID; the scoring seed moves the
    metrics that draw from it; a field of no metric's block (the suite, a new one) moves every metric."""
    bound = {
        path: sorted(k for k in ("fid", "kid", "is", "clip", "adherence", "robustness", "cmmd") if binds(path, k))
        for path in ("reference.images_sha256", "judge.threshold", "seed", "clip.model", "suite.version", "new.field")
    }
    assert bound == {
        "reference.images_sha256": ["cmmd", "fid", "kid"],
        "judge.threshold": ["adherence", "robustness"],
        "seed": ["is", "kid"],
        "clip.model": ["clip"],
        "suite.version": ["adherence", "clip", "cmmd", "fid", "is", "kid", "robustness"],
        "new.field": ["adherence", "clip", "cmmd", "fid", "is", "kid", "robustness"],
    }
    assert binds("kid.subsets", "kid") and not binds("kid.subsets", "fid")  # a metric's own block
    assert binds("reference.images_sha256", "not_a_registered_key")  # unknown keys: every field binds
