"""cxraug.classifiers: the classifier zoo, head presets, training, evaluation and prediction.

Registry names: ``custom-cnn``, ``resnet18``, ``resnet34``, ``resnet50``, ``simple-resnet18``, ``ib-resnet``,
``vgg16``, ``inception-v3`` (:data:`CLASSIFIERS`); head presets in :data:`~cxraug.classifiers.heads.HEADS`.

API used by the study runner and the metrics package::

    cfg = ClassifierConfig(model="resnet18", epochs=40, augment="fedoruk", seed=1)
    trained = train_classifier(splits.train, splits.val, cfg, out_dir=None, device="auto")  # TrainedClassifier
    metrics = evaluate(trained, splits.test)      # JSON-able dict, confusion matrix included
    trained.save("best.pt"); TrainedClassifier.load("best.pt")
    trained.model.features(x)                     # penultimate activations, e.g. 512-d for ResNet-18
"""

from cxraug.classifiers.base import CLASSIFIERS, Classifier, build_classifier
from cxraug.classifiers import custom_cnn, ib_resnet, inception, resnet, simple_resnet, vgg  # noqa: F401  (register)
from cxraug.classifiers.evaluate import evaluate, metrics_from_predictions
from cxraug.classifiers.train import ClassifierConfig, TrainedClassifier, train_classifier

__all__ = [
    "CLASSIFIERS",
    "Classifier",
    "ClassifierConfig",
    "TrainedClassifier",
    "build_classifier",
    "evaluate",
    "metrics_from_predictions",
    "train_classifier",
]
