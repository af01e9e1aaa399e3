"""cxraug.metrics: image-quality metrics of synthetic chest X-rays (classification metrics live in
``cxraug.classifiers.evaluate``). Modules, each importable on its own:

* :mod:`~cxraug.metrics.features` - ``get_extractor("domain" | "inception" | "xrv", ...)``, one interface;
  ``domain`` (a ResNet-18 trained on the real training split, :mod:`~cxraug.metrics.encoder`) is the default.
* :mod:`~cxraug.metrics.fid`, :mod:`~cxraug.metrics.kid`, :mod:`~cxraug.metrics.prdc` - FID (bootstrap CI,
  small-N warning), KID (subset size from the counts, mean ± sd, bootstrap CI), precision/recall/density/coverage.
* :mod:`~cxraug.metrics.pixel` - SSIM, MS-SSIM (scales from the image size), RMSE, SRE.
* :mod:`~cxraug.metrics.scorer` - ``make_scorer(real_images, labels, features)`` for generator checkpoints.
* :mod:`~cxraug.metrics.memorisation` - near-copy audit, gallery, ``drop_near_copies``.
* :mod:`~cxraug.metrics.tstr` - train on synthetic, test on real.
* :mod:`~cxraug.metrics.evaluate_images` - the full report behind ``cxraug evaluate-images``.
"""
