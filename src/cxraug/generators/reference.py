"""Reference generators for tests and sanity arms (conditional: one model for all classes).

* ``oracle`` - draws *new* phantoms of the requested class from the phantom dataset's own distribution:
  on phantom data it is a perfect generator, so adding its images must help a small training set.
* ``copy`` - returns training images of the requested class (cycling in a seeded order): perfect fidelity,
  no novelty; the memorisation audit must flag it.
* ``noise`` - uniform noise: KID and coverage must sit far from the real-vs-real floor.

None of them learns weights; ``fit`` still writes the usual checkpoint so that studies treat them like any
other generator.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
import torch
from pydantic import Field

from cxraug.data.imageset import to_unit
from cxraug.errors import CxraugError
from cxraug.generators import GENERATORS
from cxraug.generators.base import Batch, Generator, GeneratorConfig, GeneratorKind, Losses


class ReferenceConfig(GeneratorConfig):
    """Reference generators train for one pass at most (``copy``) or not at all."""

    steps: int = Field(0, ge=0)


def _seed_from(rng: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=rng))


class _Reference(Generator):
    kind = GeneratorKind.CONDITIONAL
    Config = ReferenceConfig
    checkpointed = ()  # no networks; the copy generator's memory is its extra_state

    def build(self) -> None:
        """No networks."""

    def train_step(self, batch: Batch) -> Losses:
        return {}

    @abstractmethod
    def _class_images(self, label: int, n: int, rng: torch.Generator) -> np.ndarray:
        """``n`` uint8 images (n, S, S) of class index ``label``."""

    def _generate(self, n: int, labels: torch.Tensor | None, source: torch.Tensor | None,
                  rng: torch.Generator) -> torch.Tensor:
        assert labels is not None
        out = torch.empty(n, 1, self.config.size, self.config.size)
        for k in labels.unique().tolist():
            where = (labels == k).nonzero().flatten().cpu()
            out[where] = to_unit(self._class_images(k, len(where), rng))
        return out


@GENERATORS.register("oracle")
class OracleGenerator(_Reference):
    """New phantoms of the requested class (``severity`` as in the phantom dataset)."""

    name = "oracle"

    def _class_images(self, label: int, n: int, rng: torch.Generator) -> np.ndarray:
        from cxraug.data.phantom import draw_phantoms

        return draw_phantoms(self.classes[label], n, self.config.size, seed=_seed_from(rng))[0]


@GENERATORS.register("copy")
class CopyGenerator(_Reference):
    """Memorises the training images it is shown (one epoch) and returns them."""

    name = "copy"

    def build(self) -> None:
        self.memory = np.zeros((0, self.config.size, self.config.size), np.uint8)
        self.memory_labels = np.zeros(0, np.int64)

    def total_steps(self, n_train: int) -> int:
        """One pass over the training set, whatever the configured budget."""
        return max(1, -(-n_train // self.config.batch_size))

    def train_step(self, batch: Batch) -> Losses:
        from cxraug.data.imageset import to_uint8

        self.memory = np.concatenate([self.memory, to_uint8(batch.x)])
        self.memory_labels = np.concatenate([self.memory_labels, batch.y.cpu().numpy()])
        return {}

    def _class_images(self, label: int, n: int, rng: torch.Generator) -> np.ndarray:
        pool = np.flatnonzero(self.memory_labels == label)
        if len(pool) == 0:
            raise CxraugError(f"copy generator saw no training image of class {self.classes[label]!r}")
        return self.memory[pool[torch.randint(0, len(pool), (n,), generator=rng).numpy()]]

    def extra_state(self) -> dict[str, Any]:
        return {"memory": torch.from_numpy(self.memory.copy()), "labels": torch.from_numpy(self.memory_labels)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if state:
            self.memory = state["memory"].numpy()
            self.memory_labels = state["labels"].numpy()


@GENERATORS.register("noise")
class NoiseGenerator(_Reference):
    """Uniform noise over 0..255, whatever the class."""

    name = "noise"

    def _class_images(self, label: int, n: int, rng: torch.Generator) -> np.ndarray:
        size = self.config.size
        return torch.randint(0, 256, (n, size, size), generator=rng, dtype=torch.uint8).numpy()
