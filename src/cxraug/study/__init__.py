"""cxraug.study: declarative studies - no augmentation vs classical vs generative - repeated and summarised.

``cxraug study PROTOCOL [--data ROOT] [--test-data ROOT] [--out DIR] [--dry-run] [--executor local|ray]
[--address auto|HOST:PORT]``

* :mod:`~cxraug.study.protocol` - the YAML protocol (Pydantic; errors name the field path).
* :mod:`~cxraug.study.data` - data at every needed size, patient-level split, regimes (too large -> rejected).
* :mod:`~cxraug.study.baselines` - fair comparisons: classical and same-count oversample + classical arms added
  for every generative arm that lacks them; the strongest non-generative arm by validation macro-F1.
* :mod:`~cxraug.study.plan` - units keyed by content hash (cxraug version, data fingerprint, settings, seeds);
  a generator unit is shared by every classifier, seed and arm that uses it on the same training subset.
* :mod:`~cxraug.study.units` - the generator and classifier units (run in any process; return their results).
* :mod:`~cxraug.study.executors` - local (sequential, in-process) and Ray.
* :mod:`~cxraug.study.stats` - t-intervals over repeats, paired tests with Holm, test-image bootstrap.
* :mod:`~cxraug.study.runner` - the driver: runs what is unfinished, writes every output.
* :mod:`~cxraug.study.lock` - one study at a time per output folder (``OUT/.lock``: PID, host; stale ones taken
  over).

Honesty rules enforced: patient-level splits; generators see only the training subset; synthetic images are
marked and only ever appended to a training set (a canary stops the study if one reaches validation or test;
they never pass through the data cache); the same test set for every arm; one loss weighting
(``training.loss_weighting``, balanced by default) and one optimiser-step budget counted on the real training
subset for every arm (``training.equal_steps``, on by default; ``max_steps`` / ``eval_every`` share an explicit
one); best checkpoints and checks, and the strongest baseline, are chosen on validation images, never on test;
units still improving at the end of their budget are flagged (``converged``) and warned about.

Repeats: ``repeats.classifier_seeds``, ``repeats.subset_draws`` (nested regimes) and ``repeats.generator_seeds``
are separate counts; every interval states the sources it covers (``covers`` column).

Output directory (``OUT``; every file written atomically):

* ``results.csv`` - one row per classifier unit: ``unit`` (key), ``kind=classifier``, ``arm``, ``role``
  (none / oversample / classical / generative), ``regime``, ``classifier``, ``draw``, ``gen_seed`` (empty
  without a generator), ``clf_seed``, ``generator_unit``, ``status`` (``ok``, ``failed: non-finite loss``,
  ``failed: non-finite loss (generator)``; a failed unit has no metrics), ``n_train``, ``n_real``,
  ``n_synthetic``, ``budget_steps``, ``eval_every``, ``early_stopping`` (the shared budget), ``steps`` (made),
  ``best_step`` (restored), ``converged`` (False: the validation score was still improving within ``patience``
  checks of the end), ``val_f1`` (validation macro-F1 of the restored model), test metrics
  ``accuracy``, ``precision``, ``recall``, ``f1``, ``specificity`` (macro averages), ``mcc``, ``auc`` (macro
  one-vs-rest), ``wall_s``; curated arms (``policy.filter``) also ``kept_fraction`` (kept / drawn candidates),
  ``judge_accuracy`` (the judge on the real validation images) and ``synthetic_short`` (``class:got/wanted`` when
  fewer passed than the policy asks for; also a warning in ``study.json``).
* ``generators.csv`` - one row per generator unit: ``unit``, ``kind=generator``, ``generator``, ``model``,
  ``regime``, ``draw``, ``gen_seed``, ``status``, ``steps`` and ``best_step`` (per trained model), ``converged``
  (False: a model's best checkpoint is its last), class-averaged ``kid``, ``floor_kid``, ``fid``, ``floor_fid``,
  ``coverage``, ``floor_coverage``, ``prdc_precision``, ``prdc_recall``, ``prdc_density`` (PRDC, named apart from
  the classifier metrics), ``memorised_fraction``, ``wall_s``. The floor is the real-vs-real value:
  training-subset images against the same validation images the synthetic ones are compared with. Folders of
  cxraug before this split (generator rows in ``results.csv``) are refused by the report with a one-line
  message: re-run the study on them (finished units are reused).
* ``summary.csv`` - per (``regime``, ``classifier``, ``arm``, ``metric``): ``n``, ``mean``, ``sd``, ``ci_low``,
  ``ci_high`` (t-interval over the repeats of status ``ok``), ``confidence``, ``covers``, ``lost_repeats``
  (failed repeats left out; an arm that lost every one has ``n`` 0); ``boot_low``, ``boot_high``, ``boot_sd``,
  ``boot_covers`` (percentile interval over test-image resamples, models fixed); generative arms also
  ``gen_kid``, ``gen_floor_kid``, ``gen_coverage``, ``gen_floor_coverage``, ``gen_memorised_fraction``; every row
  ``strongest_baseline`` (the non-generative arm with the highest mean validation macro-F1 of its regime and
  classifier) and ``undertrained`` (repeats flagged not converged).
* ``comparisons.csv`` - paired differences arm - baseline (:func:`cxraug.study.baselines.pairings`): against the
  first ``none`` arm, the first classical-only arm, the oversample arm with the same policy (``baseline_role``
  ``none`` / ``classical`` / ``oversample``) and, for generative arms, the strongest non-generative arm
  (``strongest_baseline`` True; role ``strongest`` when it is none of the others): ``regime``, ``classifier``,
  ``arm``, ``baseline``, ``baseline_role``, ``strongest_baseline``, ``metric``, ``n`` pairs (same draw and
  classifier seed; generator seeds averaged within a pair), ``mean``, ``sd``, ``ci_low``, ``ci_high``, ``t``, ``p``, ``p_holm`` (Holm over every comparison of that
  metric), ``covers``, ``boot_*`` (paired test-image bootstrap of the difference).
* ``ablation.csv`` - the recipe ablation (:mod:`cxraug.study.ablation`): per generative arm its generator, mode,
  filter, synthetic weight, schedule and classical policy beside its paired macro-F1 / MCC difference to classical,
  its mean validation macro-F1 (``val_f1``) and ``chosen`` (the generative arm with the best ``val_f1``).
* ``subgroups.csv`` - when the test images carry ``metrics.subgroups`` columns (``population``,
  ``source_repo``): per arm x ``subgroup`` (``column=value``) mean/sd/t-interval of each metric, ``n_test``.
* ``generator_classes.csv`` - per generator unit and ``class``: the image metrics (``prdc_*`` as in
  ``generators.csv``) and their floors (``floor_prdc_precision``, ...), ``memorised``.
* ``generator_checkpoints.csv`` - image metrics of scheduled checkpoints (``keep_steps``): ``step``, ``class``,
  ``kid``, ``fid``, ``coverage``, ``floor_kid``, ``floor_fid``.
* ``curation.csv`` - per generator unit, ``filter`` (its key and settings) and ``class``: ``drawn``, ``passed``,
  ``kept``, ``needed``, ``kept_fraction``, ``not_selected`` (passed, not chosen by diversity), ``rejected_<test>``
  per test (``near_copy``, ``confidence``, ``realism``; a candidate can fail several), ``short``,
  ``judge_accuracy``, ``judge`` (its cache hash).
* ``tables.md`` - the published tables in their own layout (``tables:`` of the protocol), mean ± sd.
* ``study.json`` - ``data`` (``"phantom"`` for phantom data), ``classes``, ``fingerprint``, ``test_data``,
  split and regime counts, ``warnings`` (data audit), ``fairness`` (``budget``: how the arms' budgets compare;
  ``added_arms``; ``warnings``: undertrained units; ``strongest_baselines``; ``chosen_on_validation``:
  regime/classifier -> the generative arm chosen on validation), versions, device, executor,
  command, ``wall_s``, ``stamp`` (:func:`cxraug.stamp.run_stamp`), ``failures`` (one line per arm that lost
  repeats and per failed generator unit, saying why), ``integrity`` (``quarantined``: damaged files moved aside
  by this run, ``partial_files_removed``, ``stale_lock_taken_over``), ``cost`` (:mod:`cxraug.study.cost`: ``estimate_s`` of what
  was left vs ``actual_s`` of the run, ``workers``, ``threads``, and per unit ``estimate_s`` / ``actual_s``).
* ``protocol.yaml``, ``plan.json`` (units, keys, dependencies), ``skipped.csv``, ``real_samples.npz``,
  ``report.html`` (:func:`cxraug.report.build_report`), ``.lock`` while a study runs, ``quarantine/`` (damaged
  files, under their own relative paths).
* ``units/<key>/result.json`` - each finished unit (classifier: ``metrics``, ``confusion_matrix``, ``y_true``,
  ``y_pred``; ``status``, and ``failure`` for a failed unit), written last, with ``files`` (the SHA-256 of the
  unit's other files) and a ``sha256`` of itself; ``units/<key>/history.csv``: one row per validation check;
  ``units/<key>/pool.npz`` - a generator unit's synthetic images; the generator's own work folders
  (``<class>/`` or ``model/``: checkpoints, ``losses.csv``, ``metric-kid.jsonl``, sample grids,
  ``MODEL_CARD.md``) and ``memorisation_<class>.png``; with a tracker, ``units/<key>/confusion.png`` of
  classifier units.

Tracking (``--track mlflow``): :mod:`~cxraug.study.track`.

Resume: re-running the same command skips units whose ``result.json`` exists and resumes unfinished generators
from ``checkpoints/last.pt``; a study killed at any moment ends identical to an uninterrupted one.

Faults (measured in BENCHMARKS.md, "Faults"; ``tests/test_study_faults.py``, ``bench/faults.py``):

* Killed at any moment: the re-run deletes the temporary files of interrupted writes, takes over the stale lock
  and ends with the same numbers.
* A damaged file (truncated, bit-flipped: unit results and their files, generator checkpoints, which end in a
  SHA-256 footer) is found by its checksum when the next run starts, moved to ``OUT/quarantine/`` with a warning
  naming it, and its unit runs again (a damaged checkpoint: its model trains again from the start).
* A second study on the same folder stops at once, naming the PID and host of the one running.
* A full disk stops the run with one message naming the file; no finished file is replaced by a partial one, and
  the same command resumes once there is space.
* A non-finite loss fails that unit only (``status``; a generator's failure fails the classifiers that need it);
  the study goes on and says which arms lost repeats. Failed units are stored: a re-run does not retry them.
"""
