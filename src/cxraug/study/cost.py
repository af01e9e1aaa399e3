"""A measured cost model: how long each unit of a plan will take on *this* machine, and the study's wall time.

Nothing here is guessed per model. :class:`StepTimer` times a few optimiser steps and a few generated images (or
forward passes) of every model the plan uses, at the unit's threads and device, on random images of the right
size, and caches the seconds per machine (``$CXRAUG_CACHE/step_times.json``; key: model settings, image size,
classes, threads, device, CPU, torch and cxraug versions). A unit's estimate is then its step and image counts
times those seconds:

* generator unit: training steps (per class for unconditional models), the images sampled at checkpoints
  (``kid_samples``) and for grids, the pool (with the near-copy gate's headroom) and the domain features of those
  and of the real training images when the study scores images, curation (the judge's training
  steps and the candidates drawn, assuming half are kept, at most ``max_draw``) and edits (``per_image`` x the
  source images, each the network passes of its chain over those of a timed sample: an edit runs all its DDIM
  ``steps`` whatever its strength, two passes a step when guided);
* classifier unit: its optimiser steps (with the arm's classical augmentation; with early stopping the whole
  budget, so an upper bound) and one forward pass per validation image at every check, plus the final
  validation and test predictions.

:func:`makespan` replays the local executor's scheduling (dependencies, longest first, ``workers`` at once) over
the estimates. Units that read or write much outside their steps (DICOM decoding, the memorisation audit's
features) cost a little more than estimated; ``study.json`` records estimate vs actual per unit.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxraug import __version__, io
from cxraug.augment import POLICIES
from cxraug.augment.synthetic import SyntheticPolicy
from cxraug.classifiers.config import ClassifierConfig
from cxraug.classifiers.steps import make_optimizer
from cxraug.classifiers.trained import build_from_config
from cxraug.data.imageset import ImageSet, to_unit
from cxraug.generators import GENERATORS
from cxraug.generators.base import GeneratorConfig, GeneratorKind
from cxraug.generators.ddpm import DDPMConfig
from cxraug.device import resolve_device
from cxraug.errors import CxraugError
from cxraug.metrics.encoder import EncoderConfig, default_cache_dir, encoder_hash, encoder_path
from cxraug.study.data import StudyData
from cxraug.study.judges import judge_config
from cxraug.study.plan import Plan, Unit
from cxraug.study.protocol import Protocol
from cxraug.study.specs import ClassifierUnitSpec, GeneratorUnitSpec

__all__ = ["Estimate", "ModelTimes", "StepTimer", "UnitSizes", "estimate_plan", "makespan", "unit_seconds"]

#: bump when what a measurement means changes (old cache entries are then ignored)
FORMAT = 1
#: the share of curation candidates assumed kept (the real share is in curation.csv after the run)
KEPT_SHARE = 0.5
#: grid images per generator grid (:meth:`cxraug.generators.base.Generator.save_grid`)
GRID_IMAGES = 16


@dataclass(frozen=True)
class ModelTimes:
    """Seconds of one optimiser step at the configured batch, and of one image: generated (generators) or one
    forward pass in evaluation mode (classifiers)."""

    step_s: float
    image_s: float


@dataclass(frozen=True)
class UnitSizes:
    """Image counts a unit's work depends on besides its spec: validation and test images."""

    n_val: int
    n_test: int


def machine_id() -> str:
    """CPU model and core count (plus the GPU's name when CUDA is present): what a timing is valid for."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no-gpu"
    return f"{cpu} x{os.cpu_count()} | {gpu}"


#: the largest batch timed; a bigger configured batch is timed at this size and scaled linearly
MAX_TIMED_BATCH = 64
#: timed calls stop once they add up to this many seconds (a slow model is timed once after its warm-up)
TIMING_BUDGET_S = 2.0


class TimingFailed(CxraugError):
    """A model could not be timed (its settings fail at the first step); the study itself will say why."""


def _sync() -> None:
    """Wait for queued CUDA work (kernels run asynchronously; a clock read before they finish times nothing)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _median_seconds(fn: Any, repeats: int) -> float:
    fn()  # warm-up: first calls allocate and pick kernels
    times: list[float] = []
    while len(times) < repeats and sum(times) < TIMING_BUDGET_S:
        _sync()
        t = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _random_images(n: int, size: int, classes: list[str], seed: int = 0) -> ImageSet:
    rng = np.random.default_rng(seed)
    return ImageSet(rng.integers(0, 256, (n, size, size), dtype=np.uint8), np.arange(n) % len(classes),
                    list(classes))


class StepTimer:
    """Times models on this machine once and remembers the seconds (``cache``: a JSON file; None: in memory).

    ``repeats`` timed calls after one warm-up; the median is kept."""

    def __init__(self, cache: str | os.PathLike[str] | None, threads: int, device: str = "cpu",
                 repeats: int = 3) -> None:
        self.cache = None if cache is None else Path(cache)
        self.threads, self.device, self.repeats = threads, device, repeats
        self.machine = machine_id()
        self._known: dict[str, dict[str, float]] = {}
        if self.cache is not None and self.cache.is_file():
            try:
                self._known = json.loads(self.cache.read_text())
            except (OSError, ValueError):
                self._known = {}  # a damaged cache is re-measured, never trusted
        self.measured = 0  # measurements made by this timer (not from the cache)

    def _key(self, what: dict[str, Any]) -> str:
        payload = {"format": FORMAT, "what": what, "threads": self.threads, "device": self.device,
                   "machine": self.machine, "torch": torch.__version__, "cxraug": __version__}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]

    def _get(self, what: dict[str, Any], measure: Any) -> ModelTimes:
        key = self._key(what)
        if key not in self._known:
            old = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            state = torch.random.get_rng_state()
            try:
                step_s, image_s = measure()
            except Exception as exc:  # noqa: BLE001 - any failure of a settings' first step; the run reports it
                first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
                raise TimingFailed(f"timing {what['kind']} {what['model']} failed: {first}") from exc
            finally:
                torch.random.set_rng_state(state)
                torch.set_num_threads(old)
            self._known[key] = {"step_s": step_s, "image_s": image_s, "what": json.dumps(what, default=str)}
            self.measured += 1
            if self.cache is not None:
                io.write_json(self.cache, self._known)
        entry = self._known[key]
        return ModelTimes(step_s=float(entry["step_s"]), image_s=float(entry["image_s"]))

    def generator(self, model: str, config: dict[str, Any], classes: list[str]) -> ModelTimes:
        """One training step and one generated image of ``model`` with ``config`` (a per-class model: one class)."""
        cls = GENERATORS.get(model)
        cfg = cls.Config(**config)
        names = classes[:1] if cls.kind is GeneratorKind.UNCONDITIONAL else list(classes)
        what = {"kind": "generator", "model": model, "config": cfg.model_dump(mode="json"), "classes": names}

        def measure() -> tuple[float, float]:
            batch = min(cfg.batch_size, MAX_TIMED_BATCH)
            gen = cls(cfg.model_copy(update={"batch_size": batch}), classes=names, device=self.device)
            data = _random_images(max(2 * batch * len(names), 8), cfg.size, names)
            step = _median_seconds(lambda: gen.train_step(gen.next_batch(data)), self.repeats)
            n = 2
            image = _median_seconds(lambda: gen.eval_samples(n, data), self.repeats) / n
            return step * cfg.batch_size / batch, image

        return self._get(what, measure)

    def classifier(self, cfg: ClassifierConfig, num_classes: int, size: int) -> ModelTimes:
        """One optimiser step (with ``cfg.augment``) and one image's forward pass of the classifier."""
        what = {"kind": "classifier", "model": cfg.model, "head": cfg.head, "batch": cfg.batch_size,
                "augment": cfg.augment, "magnitude": cfg.augment_magnitude, "optimizer": cfg.optimizer,
                "pretrained": cfg.is_pretrained, "channels_last": cfg.channels_last, "size": size,
                "classes": num_classes}

        def measure() -> tuple[float, float]:
            net = build_from_config(cfg, num_classes, size, load_weights=False).to(self.device)
            policy = POLICIES.get(cfg.augment)(cfg.augment_magnitude) if cfg.augment else None
            opt = make_optimizer(cfg, [p for p in net.parameters() if p.requires_grad], cfg.lr)
            batch = min(cfg.batch_size, MAX_TIMED_BATCH)
            data = _random_images(batch, size, [str(i) for i in range(num_classes)])
            x_u8, y = torch.as_tensor(data.images), torch.as_tensor(data.labels).to(self.device)

            def step() -> None:
                net.train()
                x = to_unit(x_u8).to(self.device)
                if policy is not None:
                    x = policy(x)
                loss = torch.nn.functional.cross_entropy(net(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            def forward() -> None:
                net.eval()
                with torch.no_grad():
                    net(to_unit(x_u8).to(self.device))

            return (_median_seconds(step, self.repeats) * cfg.batch_size / batch,
                    _median_seconds(forward, self.repeats) / batch)

        return self._get(what, measure)

    def encoder(self, cfg: EncoderConfig, num_classes: int) -> ModelTimes:
        """The domain encoder / curation judge: a classifier of ``cfg.model`` trained at ``cfg.size``."""
        return self.classifier(ClassifierConfig(model=cfg.model, batch_size=cfg.batch_size, augment=cfg.augment,
                                                lr=cfg.lr), num_classes, cfg.size)


def _generator_seconds(spec: GeneratorUnitSpec, counts: dict[str, int], timer: StepTimer) -> float:
    cls = GENERATORS.get(spec.model)
    cfg = cls.Config(**spec.config)
    classes = spec.train_classes or list(counts)
    t = timer.generator(spec.model, spec.config, classes)
    per_model = [counts[c] for c in classes] if cls.kind is GeneratorKind.UNCONDITIONAL else \
        [sum(counts[c] for c in classes)]
    images = 0.0
    train_s = 0.0
    scored = spec.metrics.image_metrics
    for n_train in per_model:
        steps = math.ceil(cfg.epochs * n_train / cfg.batch_size) if cfg.epochs is not None else cfg.steps
        train_s += steps * t.step_s
        images += math.ceil(steps / cfg.sample_every) * GRID_IMAGES
        if scored:
            images += math.ceil(steps / cfg.checkpoint_every) * cfg.kid_samples
    pool = sum(spec.pool.values())
    images += pool * (1.25 if spec.drop_near_copies and pool else 1.0)
    extra_s = 0.0
    if scored:  # domain features of the scored samples, the pool and the real images the metrics compare with
        enc = timer.encoder(EncoderConfig(**spec.metrics.encoder), len(counts))
        extra_s += (images + sum(counts.values())) * enc.image_s
    judges = {judge_config(spec, f).model_dump_json()
              for f in [*spec.curations, *(p.filter for p in spec.edits if p.filter)]}
    n_real = sum(counts.values())
    for judge in judges:
        jc = EncoderConfig.model_validate_json(judge)
        extra_s += jc.epochs * math.ceil(n_real / jc.batch_size) * timer.encoder(jc, len(counts)).step_s
    for f in spec.curations:
        images += pool * min(f.max_draw, 1 / KEPT_SHARE)
    for policy in spec.edits:
        images += _edit_images(policy, counts, classes, cfg) * (min(policy.filter.max_draw, 1 / KEPT_SHARE)
                                                           if policy.filter else 1.0)
    return train_s + extra_s + images * t.image_s


def _edit_images(policy: SyntheticPolicy, counts: dict[str, int], classes: list[str],
                 cfg: GeneratorConfig) -> float:
    """Edits in units of one timed image (a free sample at the model's own steps and guidance): a DDPM edit costs
    its chain's network passes (:meth:`cxraug.generators.ddpm.DDPMConfig.network_passes`: all of ``steps`` for
    any strength above steps / T, twice over when guided), another editor one sample per edit."""
    edited = policy.classes or classes
    if policy.target is not None:
        edited = [c for c in counts if c != policy.target]
    n = (policy.per_image or 1) * sum(counts.get(c, 0) for c in edited)
    if not isinstance(cfg, DDPMConfig):
        return float(n)
    strength = policy.strength if isinstance(policy.strength, (int, float)) else sum(policy.strength or [1]) / 2
    return n * cfg.network_passes(policy.steps, policy.guidance, float(strength)) / cfg.network_passes()


def _classifier_seconds(spec: ClassifierUnitSpec, counts: dict[str, int], sizes: UnitSizes, size: int,
                        timer: StepTimer) -> float:
    cfg = ClassifierConfig(**{**spec.classifier, "augment": spec.arm.classical})
    t = timer.classifier(cfg, len(counts), spec.size or size)
    steps = spec.budget.max_steps + (cfg.unfreeze_last_epochs or 0) * math.ceil(sum(counts.values()) / cfg.batch_size)
    checks = math.ceil(steps / spec.budget.eval_every)
    return steps * t.step_s + (checks * sizes.n_val + sizes.n_val + sizes.n_test) * t.image_s


def unit_seconds(unit: Unit, counts: dict[str, int], sizes: UnitSizes, size: int, timer: StepTimer) -> float:
    """Estimated seconds of one unit (``counts``: real training images per class of its subset)."""
    if isinstance(unit.spec, GeneratorUnitSpec):
        return _generator_seconds(unit.spec, counts, timer)
    return _classifier_seconds(unit.spec, counts, sizes, size, timer)


def makespan(plan: Plan, cost: dict[str, float], workers: int, done: set[str] = frozenset()) -> float:
    """Wall seconds of running the plan's unfinished units with the local executor's scheduling: a unit starts
    when its generator unit has finished, the longest ready one first, ``workers`` at once (one after another in
    plan order with one worker)."""
    left = [u for u in plan.units if u.key not in done]
    if workers <= 1:
        return sum(cost[u.key] for u in left)
    keys = {u.key for u in left}
    waiting = sorted(left, key=lambda u: -cost[u.key])
    finished_at: dict[str, float] = {}
    running: list[tuple[float, str]] = []
    now = 0.0
    while waiting or running:
        ready = [u for u in waiting if u.needs is None or u.needs not in keys or u.needs in finished_at]
        for u in ready[:workers - len(running)]:
            waiting.remove(u)
            running.append((now + cost[u.key], u.key))
        if not running:
            break  # units waiting for a generator that is not in the plan never start (the executor refuses)
        running.sort()
        now, key = running.pop(0)
        finished_at[key] = now
    return now


@dataclass(frozen=True)
class Estimate:
    """The estimated cost of what is left of a plan (``study.json`` keeps it beside the actual wall time)."""

    wall_s: float  # with ``workers`` units at once, the driver's encoder training included
    unit_s: dict[str, float]  # unit key -> estimated seconds (every unit of the plan, finished ones too)
    left: int  # units to run
    workers: int
    threads: int
    encoder_s: float  # domain-encoder training in the driver before the units (0 when cached)
    measured_now: int  # models timed by this estimate (the others came from the cache)
    upper_bound: bool  # classifiers stop early: their whole budget was counted
    failed: str | None = None  # why there is no estimate (a model could not be timed)

    def line(self) -> str:
        if self.failed is not None:
            return f"no wall-time estimate: {self.failed}"
        cpu = sum(self.unit_s.values())
        bound = "at most " if self.upper_bound else ""
        return (f"estimated wall time of what is left: {bound}{self.wall_s / 60:.1f} min for {self.left} units with "
                f"{self.workers} worker(s) x {self.threads} thread(s) (all units: {cpu / 60:.1f} unit-minutes; "
                f"from step times measured on this machine, {self.measured_now} model(s) timed now)")

    def record(self, actual: dict[str, float], wall_s: float) -> dict[str, Any]:
        """study.json's ``cost``: estimate vs actual for the run and for each unit that ran."""
        units = [{"unit": k, "estimate_s": round(self.unit_s[k], 1), "actual_s": round(v, 1),
                  "ratio": round(v / self.unit_s[k], 3) if self.unit_s[k] > 0 else None}
                 for k, v in actual.items() if k in self.unit_s]
        if self.failed is not None:
            return {"estimate_s": None, "actual_s": round(wall_s, 1), "failed": self.failed}
        return {"estimate_s": round(self.wall_s, 1), "actual_s": round(wall_s, 1),
                "ratio": round(wall_s / self.wall_s, 3) if self.wall_s > 0 else None, "workers": self.workers,
                "threads": self.threads, "units_left": self.left, "encoder_s": round(self.encoder_s, 1),
                "upper_bound": self.upper_bound, "units": units}


def step_times_path(cache_dir: str | None) -> Path:
    """``<cache_dir>/step_times.json`` (default ``$CXRAUG_CACHE``, else ``~/.cache/cxraug``)."""
    return (Path(cache_dir) if cache_dir else default_cache_dir().parent) / "step_times.json"


def estimate_plan(plan: Plan, proto: Protocol, data: StudyData, data_size: int, done: set[str],
                  workers: int) -> Estimate:
    """Time the plan's models (cached per machine) and estimate every unit and the wall time of what is left."""
    try:
        return _estimate(plan, proto, data, data_size, done, workers)
    except TimingFailed as exc:
        return Estimate(wall_s=0.0, unit_s={}, left=sum(u.key not in done for u in plan.units), workers=workers,
                        threads=proto.execution.threads, encoder_s=0.0, measured_now=0, upper_bound=False,
                        failed=str(exc))


def _estimate(plan: Plan, proto: Protocol, data: StudyData, data_size: int, done: set[str],
              workers: int) -> Estimate:
    ex = proto.execution
    device = str(resolve_device(ex.device))
    timer = StepTimer(step_times_path(proto.data.cache_dir), ex.threads, device)
    counts = data.counts(data_size)
    sizes = UnitSizes(n_val=len(data.splits[data_size].val), n_test=len(data.test[data_size]))
    unit_s = {u.key: unit_seconds(u, counts[(u.fields["regime"], u.fields["draw"])], sizes, data_size, timer)
              for u in plan.units}
    for u in plan.units:
        u.cost_s = unit_s[u.key]
    encoder_s = 0.0
    pending_gens = [u for u in plan.of_kind("generator") if u.key not in done]
    if pending_gens and proto.metrics.image_metrics and proto.metrics.features == "domain":
        cfg = EncoderConfig(**proto.metrics.encoder)
        train = data.splits[data_size].train
        if not encoder_path(encoder_hash(train, cfg), proto.data.cache_dir).exists():
            encoder_s = cfg.epochs * math.ceil(len(train) / cfg.batch_size) * timer.encoder(
                cfg, len(data.classes)).step_s
    # more threads in use than cores: every unit slows down by the oversubscription
    crowd = max(1.0, workers * ex.threads / (os.cpu_count() or 1)) if device == "cpu" else 1.0
    wall = encoder_s + crowd * makespan(plan, unit_s, workers, done)
    early = any(u.spec.budget.early_stopping for u in plan.of_kind("classifier") if u.key not in done)
    return Estimate(wall_s=wall, unit_s=unit_s, left=sum(u.key not in done for u in plan.units), workers=workers,
                    threads=ex.threads, encoder_s=encoder_s, measured_now=timer.measured, upper_bound=early)
