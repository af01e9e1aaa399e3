"""cxraug: does synthetic data help a chest X-ray classifier, and by how much?

Data flows one way: data -> generators -> augmented training set -> classifier -> metrics -> report.
"""

__version__ = "0.1.0"
