"""cxraug.report: ``OUT/report.html``, one self-contained file (every image embedded as base64 PNG).

:func:`build_report` reads a study output folder written by :mod:`cxraug.study.runner`; ``cxraug report OUT``
rebuilds it. Input format (only ``results.csv`` and ``summary.csv`` are required; each section is shown when its
input exists):

* ``results.csv`` - one row per classifier unit: ``unit`` (key), ``kind=classifier``, ``arm``, ``role``,
  ``regime``, ``classifier``, ``draw``, ``gen_seed``, ``clf_seed``, metric columns, ``wall_s``. A folder with
  generator rows in it (cxraug before ``generators.csv``) is refused with a one-line message saying to re-run.
* ``summary.csv`` - one row per (``regime``, ``classifier``, ``arm``, ``metric``): ``n``, ``mean``, ``sd``,
  ``ci_low``, ``ci_high``, ``confidence``, ``covers``, optionally ``boot_low``/``boot_high`` (test bootstrap).
* ``comparisons.csv`` - paired differences: ``regime``, ``classifier``, ``arm``, ``baseline``, ``metric``,
  ``mean``, ``ci_low``, ``ci_high``, ``p_holm``, ``covers``, optionally ``boot_low``/``boot_high``.
* ``ablation.csv`` - per generative arm: ``generator``, ``mode``, ``filter``, ``weight``, ``schedule``,
  ``classical``, ``f1`` / ``mcc`` ``_vs_classical``, ``_low``, ``_high``, ``_p_holm``, ``val_f1`` and ``chosen``
  (:mod:`cxraug.study.ablation`).
* ``generators.csv`` - one row per generator unit: ``unit``, ``kind=generator``, ``generator``, ``model``,
  ``regime``, ``draw``, ``gen_seed``, image metrics (``kid``, ``floor_kid``, ``fid``, ``floor_fid``,
  ``coverage``, ``floor_coverage``, ``prdc_precision``, ``prdc_recall``, ``memorised_fraction``), ``wall_s``.
* ``generator_classes.csv`` - per generator unit and ``class``: image metrics incl. ``memorised_fraction``.
* ``generator_checkpoints.csv`` - ``unit``, ``step``, ``class``, ``kid``, ``fid``, ``floor_kid``, ``floor_fid``.
* ``study.json`` - ``name``, ``data`` (``"phantom"`` or the root), ``classes`` (label index -> name),
  ``fingerprint``, ``test_data``, ``train``/``val``/``test`` (class -> count), ``patients``, ``regimes``
  (``"<regime> draw <d>"`` -> class -> count), ``skipped`` (count), ``warnings`` (data-audit lines: leakage,
  duplicates, confounds), ``cxraug``, ``python``, ``platform``, ``versions`` (package -> version), ``device``,
  ``executor``, ``command``, ``wall_s``, ``failures`` (one line per arm that lost repeats or failed generator unit),
  ``integrity.quarantined`` (damaged files moved aside: ``path``, ``reason``, ``moved_to``).
* ``protocol.yaml`` - the protocol (order of regimes/arms/classifiers, arm roles, ``execution``).
* ``skipped.csv`` - ``path``, ``reason`` of every unreadable input file.
* ``real_samples.npz`` - a few real *training* images per class (:func:`save_real_samples`).
* ``units/<key>/result.json`` (classifier: ``y_true``, ``y_pred`` on the test set), ``units/<key>/pool.npz``
  (generator: synthetic ``images``, ``labels``), ``units/<key>/<model folder>/losses.csv`` (``step``, loss
  columns; older runs also ``eval_*`` checkpoint scores) and ``metric-kid.jsonl`` (checkpoint scores),
  ``units/<key>/memorisation_<class>.png`` (memorisation gallery).
"""

from cxraug.report.build import build_report
from cxraug.report.study_dir import save_real_samples

__all__ = ["build_report", "save_real_samples"]
