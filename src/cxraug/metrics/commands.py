"""CLI commands of cxraug.metrics: ``cxraug evaluate-images`` (registered on the root app by cxraug.cli)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Optional

import typer

from cxraug.data.options import CacheDir, Clahe, MaskCrop, SplitSeed, TestFrac, ValFrac
from cxraug.metrics.features import EXTRACTORS


def evaluate_images_command(
    real: str = typer.Option(..., "--real", help="Dataset root (or 'phantom'): its training split is the "
                                                 "reference (--real-split val for validation); never test."),
    fake: Path = typer.Option(..., "--fake", help="Synthetic images: manifest.csv, class folders or flat PNGs."),
    features: EXTRACTORS.choices() = typer.Option("domain", "--features", help="Feature extractor."),
    dims: Optional[int] = typer.Option(None, "--dims", help="Feature dimension (inception: 2048 or 768)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Local weights file of the extractor."),
    per_class: bool = typer.Option(False, "--per-class", help="Also every metric per class."),
    tstr: bool = typer.Option(False, "--tstr", help="Train on synthetic, test on real (labelled fakes)."),
    audit: bool = typer.Option(False, "--audit", help="Memorisation audit against the training split "
                                                      "(calibrated on validation images), gallery PNG beside --out."),
    real_split: Literal["train", "val"] = typer.Option("train", "--real-split", help="Real reference (never test)."),
    size: Optional[int] = typer.Option(None, "--size", help="Preprocessing size; default: the synthetic size."),
    clahe: Clahe = False,
    mask_crop: MaskCrop = False,
    val_frac: ValFrac = 0.15,
    test_frac: TestFrac = 0.15,
    split_seed: SplitSeed = 0,
    n_boot: int = typer.Option(100, "--bootstrap", help="Bootstrap resamples for FID/KID intervals (0: off)."),
    encoder_epochs: int = typer.Option(8, "--encoder-epochs", help="Domain encoder training epochs."),
    cache_dir: CacheDir = None,
    encoder_dir: Optional[str] = typer.Option(None, "--encoder-dir", help="Domain encoder cache folder."),
    curate: Optional[str] = typer.Option(None, "--filter", help="Curate the (labelled) synthetic images like an "
                                          "arm's policy.filter, e.g. confidence=0.7,realism=5 (judge: a domain "
                                          "encoder trained on the real training split); writes the kept list."),
    kept: Optional[Path] = typer.Option(None, "--kept", help="Kept-list CSV of --filter (default: beside --out "
                                        "as <name>_kept.csv, else kept.csv here)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the JSON report here."),
    seed: int = typer.Option(0, "--seed", help="Seed of subsets, bootstrap and random pairs."),
) -> None:
    """FID, KID, PRDC, SSIM/MS-SSIM, RMSE/SRE (and TSTR, memorisation audit) of synthetic images against real
    training or validation images; prints the JSON report. Example:
    cxraug evaluate-images --real ../shared/data/cxr/dev --fake runs/dcgan-covid/png --per-class --out img.json"""
    from cxraug import io
    from cxraug.data.preprocess import PreprocessConfig
    from cxraug.data.splits import load_splits
    from cxraug.metrics.encoder import EncoderConfig
    from cxraug.metrics.evaluate_images import evaluate_images, load_fake_dir
    from cxraug.metrics.features import get_extractor
    from cxraug.metrics.tstr import align_classes

    policy_filter = parse_filter(curate) if curate is not None else None  # a bad --filter stops before any work
    fakes = load_fake_dir(fake)
    prep = PreprocessConfig(size=size or fakes.size, clahe=clahe, mask_crop=mask_crop)
    splits = load_splits(None if real == "phantom" else real, val_frac, test_frac, split_seed, preprocess=prep,
                         cache_dir=cache_dir)
    reference = splits.train if real_split == "train" else splits.val
    if fakes.classes != ["unlabelled"]:
        fakes = align_classes(fakes, reference.classes)
    extractor = get_extractor(features, dims=dims, weights=weights,
                              train=splits.train if features == "domain" and weights is None else None,
                              cache_dir=encoder_dir,
                              encoder=EncoderConfig(epochs=encoder_epochs) if features == "domain" else None)
    result = evaluate_images(reference, fakes, extractor, per_class=per_class, n_boot=n_boot, tstr=tstr,
                             tstr_real_train=splits.train if tstr and real_split == "val" else None, seed=seed)
    if audit:
        result["memorisation"] = _audit(fakes, splits.train, splits.val, extractor, out)
    if policy_filter is not None:
        kept = kept or (out.with_name(out.stem + "_kept.csv") if out is not None else Path("kept.csv"))
        result["curation"] = _curate(fakes, splits, policy_filter, EncoderConfig(epochs=encoder_epochs),
                                     encoder_dir, kept)
    if out is not None:
        io.write_json(out, result)
    print(json.dumps(_summary(result), indent=2, default=str))


def _audit(fakes: Any, train: Any, val: Any, extractor: Any, out: Optional[Path]) -> dict[str, Any]:
    from cxraug.data.resize import resize_uint8
    from cxraug.metrics.memorisation import audit, gallery

    images = resize_uint8(fakes.images, train.size)
    res = audit(images, train.images, val.images if len(val) >= 2 else None, extractor=extractor)
    if out is not None:
        res["gallery"] = str(gallery(images, train.images, res, out.with_name(out.stem + "_closest.png")))
    return res


def parse_filter(text: str) -> Any:
    """``confidence=0.7,realism=5,diversity=true`` -> a CurationFilter (bad keys or values: one clear error)."""
    from pydantic import ValidationError

    from cxraug.augment.synthetic import CurationFilter
    from cxraug.errors import CxraugError

    fields: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, eq, value = part.partition("=")
        if not eq:
            raise CxraugError(f"--filter: {part!r} is not NAME=VALUE (e.g. confidence=0.7,realism=5)")
        fields[name.strip()] = value.strip()
    try:
        return CurationFilter(**fields)
    except ValidationError as exc:
        bad = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'filter'}: {e['msg']}" for e in exc.errors())
        raise CxraugError(f"--filter {text!r}: {bad}") from None


def _curate(fakes: Any, splits: Any, flt: Any, config: Any, encoder_dir: Optional[str], path: Path) -> dict[str, Any]:
    from cxraug import io
    from cxraug.errors import CxraugError
    from cxraug.metrics.curation import Judge, curate_images

    if fakes.classes == ["unlabelled"]:
        raise CxraugError("--filter needs labelled synthetic images (class folders or a manifest with labels)")
    judge = Judge.train(splits.train, config, encoder_dir)
    keep, records, detail = curate_images(fakes.images, fakes.labels, fakes.classes, flt, judge, splits.train)
    rows = [{"path": p, "class": fakes.classes[int(y)], "kept": bool(k),
             **{c: (round(float(v[i]), 6) if c == "probability" else bool(v[i])) for c, v in detail.items()}}
            for i, (p, y, k) in enumerate(zip(fakes.paths, fakes.labels, keep))]
    io.write_csv(path, rows)
    return {"filter": flt.model_dump(), "judge": {"hash": judge.record["hash"], "val_accuracy":
            judge.accuracy(splits.val)}, "classes": records, "kept": int(keep.sum()), "of": len(keep),
            "kept_list": str(path)}


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """The report without per-image lists (those stay in the JSON file)."""
    if "memorisation" not in result:
        return result
    mem = {k: v for k, v in result["memorisation"].items() if not isinstance(v, list)}
    return {**result, "memorisation": mem}


def register(app: typer.Typer) -> None:
    """Add this package's commands to the root app."""
    app.command("evaluate-images")(evaluate_images_command)
