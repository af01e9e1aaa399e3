"""cxraug.augment: classical policies (registry :data:`POLICIES`: ``fedoruk``, ``keras``, ``flip``; see
:mod:`cxraug.augment.classical`), DiffAugment for GAN training, and the generative-augmentation plug-in.

``POLICIES.get(name)(magnitude=1.0)`` returns a torchvision.transforms.v2 transform for float batches."""

from typing import Callable

from torchvision.transforms import v2

from cxraug.registry import Registry

POLICIES: Registry[Callable[..., v2.Transform]] = Registry("augmentation policy")

from cxraug.augment import classical  # noqa: E402,F401  (registers the policies)
