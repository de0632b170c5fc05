"""The built-in metrics, one declaration each (a MetricSpec): how a cell's inputs reach each pure metric function.

One module per family, each importing only what its metrics read: `inception` (FID, KID, IS, precision/recall, FID∞,
density/coverage, sFID), `clip` (CLIP score, R-precision, CMMD, diversity, FD_CLIP), `vendi` (on CLIP and on Inception
features), `adherence` (adherence, seed robustness, faithfulness), `dinov2` (FD_DINOv2), `preference` (the
human-preference scorers), `benchmarks` (GenEval, DSG, TIFA, DPG-Bench, T2I-CompBench); `cells` holds what several
share. sdeval.metrics.registry names each metric as `sdeval.metrics.builtin.FAMILY:NAME` and imports its module on
first use; this package's face imports none of them.
"""
