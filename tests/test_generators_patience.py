"""Generator early stopping: ``patience`` scored checkpoints without a better KID end training, also on resume."""

from __future__ import annotations

import numpy as np
from metrics_helpers import phantoms

from cxraug.generators import GENERATORS

CONFIG = {"size": 16, "batch_size": 8, "g_channels": 8, "d_channels": 8, "steps": 40, "checkpoint_every": 4,
          "sample_every": 40, "kid_samples": 10, "log_every": 4}


def planted_scorer(kids: dict[int, float]):
    """A scorer whose KID at the k-th scored checkpoint is ``kids[k]`` (default 1.0)."""
    calls = {"n": 0}

    def score(images: np.ndarray, labels) -> dict[str, float]:
        calls["n"] += 1
        return {"kid": kids.get(calls["n"], 1.0)}

    return score


def test_training_stops_after_patience_checkpoints_without_a_better_kid(tmp_path):
    data = phantoms(8, size=16, classes=["COVID"]).of_class("COVID")
    gen = GENERATORS.get("dcgan")({**CONFIG, "patience": 2}, classes=["COVID"])
    res = gen.fit(data, tmp_path, scorer=planted_scorer({1: 0.5, 2: 0.4}))  # best at the 2nd check (step 8)
    assert res.best_step == 8 and res.steps == 16 and res.stopped_early  # checks at 12 and 16 were no better
    again = GENERATORS.get("dcgan")({**CONFIG, "patience": 2}, classes=["COVID"])
    res2 = again.fit(data, tmp_path, scorer=planted_scorer({}), resume=True)
    assert res2.steps == 16 and res2.stopped_early  # a resumed run stops where the first one did


def test_without_patience_the_whole_budget_is_trained(tmp_path):
    data = phantoms(8, size=16, classes=["COVID"]).of_class("COVID")
    gen = GENERATORS.get("dcgan")(CONFIG, classes=["COVID"])
    res = gen.fit(data, tmp_path, scorer=planted_scorer({1: 0.5}))
    assert res.steps == 40 and not res.stopped_early and res.best_step == 4
