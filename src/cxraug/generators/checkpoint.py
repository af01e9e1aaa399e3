"""What a generator checkpoint holds, and how it is put back.

A checkpoint (``cxraug-generator/1``) is one weights-only ``torch`` file: the model's name, config, classes and
preprocessing, the step and best-by-KID record, the state of every network and optimiser the model declares
(:attr:`cxraug.generators.base.Generator.checkpointed`) and of their EMA copies, the model's
:meth:`~cxraug.generators.base.Generator.extra_state`, the run stamp, and the random state that exact resume
needs: the data-order RNG and epoch permutation of the generator, and the process-wide torch (and CUDA) RNG.

:func:`restore` puts the process-wide RNG back only when asked (``global_rng=True``: resuming or continuing
training); loading a model to sample from it leaves the caller's RNG alone.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch

from cxraug import io
from cxraug.errors import CxraugError

if TYPE_CHECKING:
    from cxraug.generators.base import Generator

FORMAT = "cxraug-generator/1"


def capture(gen: "Generator") -> dict[str, Any]:
    """Everything :func:`restore` needs to continue ``gen``'s training bit for bit."""
    return {
        "format": FORMAT,
        "name": gen.name,
        "config": gen.config.model_dump(),
        "classes": list(gen.classes),
        "preprocess": gen.preprocess,
        "step": gen.step,
        "best": dict(gen.best),
        "modules": {k: m.state_dict() for k, m in gen.modules().items()},
        "ema": {k: m.state_dict() for k, m in gen.ema.items()},
        "optimizers": {k: o.state_dict() for k, o in gen.optimizers().items()},
        "rng": {"torch": torch.get_rng_state(), "data": gen._data_rng.get_state(),
                "perm": gen._perm if gen._perm is not None else torch.empty(0, dtype=torch.long),
                "perm_pos": gen._perm_pos,
                "cuda": torch.cuda.get_rng_state_all() if gen.device.type == "cuda" else []},
        "extra": gen.extra_state(),
        "stamp": gen.stamp,
    }


def restore(gen: "Generator", state: dict[str, Any], *, global_rng: bool) -> None:
    """Put ``state`` (from :func:`capture`) back into ``gen``: weights, EMA copies, extra state, optimisers, step,
    best record, stamp and the generator's own data-order RNG; the process-wide torch/CUDA RNG only with
    ``global_rng`` (resuming training)."""
    for k, m in gen.modules().items():
        m.load_state_dict(state["modules"][k])
    for k, m in gen.ema.items():
        if k in state.get("ema", {}):
            m.load_state_dict(state["ema"][k])
    gen.load_extra_state(state.get("extra", {}))
    for k, o in gen.optimizers().items():
        o.load_state_dict(state["optimizers"][k])
    gen.step = int(state["step"])
    gen.best = dict(state.get("best", {"step": None, "kid": None}))
    gen.stamp = state.get("stamp")
    rng = state["rng"]
    gen._data_rng.set_state(rng["data"])
    gen._perm = rng["perm"] if len(rng["perm"]) else None
    gen._perm_pos = int(rng["perm_pos"])
    if global_rng:
        torch.set_rng_state(rng["torch"])
        if gen.device.type == "cuda" and rng.get("cuda"):
            torch.cuda.set_rng_state_all(rng["cuda"])


def find(path: str | Path) -> Path:
    """The checkpoint file of ``path``: itself, or for a run folder its best, else its last checkpoint."""
    p = Path(path)
    if not p.is_dir():
        return p
    cands = [p / "checkpoints" / "best.pt", p / "checkpoints" / "last.pt", p / "best.pt", p / "last.pt"]
    found = next((c for c in cands if c.exists()), None)
    if found is None:
        raise CxraugError(f"no generator checkpoint (best.pt or last.pt) under {p}")
    return found


def read(path: str | Path, device: str | torch.device) -> dict[str, Any]:
    """The state in checkpoint file ``path`` (verified; not a cxraug generator checkpoint: one-line error)."""
    state = io.torch_load(path, map_location=device)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CxraugError(f"{path} is not a cxraug generator checkpoint")
    return state


@contextlib.contextmanager
def global_rng_kept(device: str | torch.device) -> Iterator[None]:
    """The process-wide torch RNG (and that of every CUDA device, when ``device`` is one or CUDA is initialised)
    as it was on entry, after the block: building a model to load weights into seeds and draws from it."""
    cuda = torch.device(device).type == "cuda" or torch.cuda.is_initialized()
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if cuda else []):
        yield
