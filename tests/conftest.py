"""Shared test set-up: one torch thread (2-core CI), no progress bars, fixed seeds."""

import os

os.environ.setdefault("CXRAUG_PROGRESS", "0")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ.get("CXRAUG_TEST_THREADS", "1")))

DEV_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "cxr", "dev")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first: under ``make test``'s parallel workers the long ones start early and the short ones
    fill in around them, instead of one long test finishing alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def _seed() -> None:
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def dev_data() -> str:
    """The real dev X-rays beside the checkout; tests using it skip when the folder is absent."""
    path = os.path.abspath(DEV_DATA)
    if not os.path.isdir(path):
        pytest.skip(f"real dev data not present at {path}")
    return path
