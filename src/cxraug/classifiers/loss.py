"""The training loss: class-weighted cross-entropy, with per-sample weights and soft targets for synthetic
images."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

from cxraug.classifiers.config import ClassifierConfig
from cxraug.errors import CxraugError


def loss_weights(cfg: ClassifierConfig, labels: np.ndarray, num_classes: int) -> torch.Tensor | None:
    """The cross-entropy class weights ``cfg.class_weights`` asks for (None = unweighted)."""
    if isinstance(cfg.class_weights, list):
        if len(cfg.class_weights) != num_classes:
            raise CxraugError(f"class_weights has {len(cfg.class_weights)} values for {num_classes} classes")
        return torch.tensor(cfg.class_weights, dtype=torch.float32)
    return class_weight_tensor(labels, num_classes) if cfg.class_weights else None


def class_weight_tensor(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """Balanced weights n / (K * n_c) (scikit-learn), 0 for a class absent from the training labels."""
    present = np.unique(labels)
    w = np.zeros(num_classes, dtype=np.float32)
    w[present] = compute_class_weight("balanced", classes=present, y=labels) * len(present) / num_classes
    return torch.as_tensor(w)


class WeightedCE:
    """Cross-entropy with per-class weights, as a weighted *sum* and the weight total it is divided by.

    Dividing each rank's sum by the weight total of the whole *global* batch makes the DDP gradient average equal
    the single-process weighted mean exactly, even when class proportions differ between the ranks' slices.
    Synthetic images (``synthetic`` mask) may weigh ``synthetic_weight`` x their class weight and learn soft
    targets ``(1 - e) onehot + e / K``: with weight 0 a batch's loss is exactly that of its real images.
    """

    def __init__(self, weight: torch.Tensor | None, num_classes: int, device: torch.device,
                 synthetic_weight: float = 1.0, smoothing: float = 0.0) -> None:
        self.weight = (torch.ones(num_classes) if weight is None else weight).to(device)
        self._sum = nn.CrossEntropyLoss(weight=self.weight, reduction="sum")
        self.num_classes = num_classes
        self.synthetic_weight, self.smoothing = synthetic_weight, smoothing

    def _plain(self, synthetic: torch.Tensor | None) -> bool:
        return synthetic is None or not bool(synthetic.any()) or (self.synthetic_weight == 1 and self.smoothing == 0)

    def _sample_weight(self, y: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor:
        return self.weight[y] * torch.where(synthetic, self.synthetic_weight, 1.0)

    def sum(self, logits: torch.Tensor, y: torch.Tensor, synthetic: torch.Tensor | None = None) -> torch.Tensor:
        if self._plain(synthetic):
            return self._sum(logits.float(), y)
        assert synthetic is not None
        target = nn.functional.one_hot(y, self.num_classes).float()
        soft = target * (1 - self.smoothing) + self.smoothing / self.num_classes
        target = torch.where(synthetic[:, None], soft, target)
        nll = -(target * torch.log_softmax(logits.float(), 1)).sum(1)
        return (self._sample_weight(y, synthetic) * nll).sum()

    def total(self, y: torch.Tensor, synthetic: torch.Tensor | None = None) -> torch.Tensor:
        if self._plain(synthetic):
            return self.weight[y].sum()
        assert synthetic is not None
        return self._sample_weight(y, synthetic).sum().clamp(min=1e-12)  # an all-synthetic batch at weight 0
