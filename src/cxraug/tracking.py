"""Experiment tracking with MLflow's client API (``pip install 'cxraug[mlflow]'``).

``--track mlflow`` logs to ``--tracking-uri`` (a server, ``sqlite:///path/mlflow.db``, ...); without it to
MLflow's own default (``MLFLOW_TRACKING_URI`` when set, else its local store in the working directory, which
``mlflow ui`` started there shows). One experiment per study or command; a study is a parent run and each of
its units a nested run (``mlflow.parentRunId``), so the MLflow UI shows a study as one expandable row.
Runs carry ``cxraug.*`` tags that let a resumed study find what it already logged.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Optional

import typer

from cxraug.errors import CxraugError

Track = Literal["none", "mlflow"]
TrackOption = Annotated[Track, typer.Option(
    "--track", help="Experiment tracker: none, or mlflow (pip install 'cxraug\\[mlflow]').")]
TrackingUri = Annotated[Optional[str], typer.Option(
    "--tracking-uri", help="MLflow tracking URI (server or sqlite:///file.db); default: MLflow's own default.")]


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dict -> ``{"a.b": "value"}`` strings (lists and None as JSON), as MLflow parameters."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v if isinstance(v, str) else json.dumps(v, default=str)
    return out


def numeric(row: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a row (booleans excluded), as MLflow metrics."""
    return {k: float(v) for k, v in row.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class MlflowTracker:
    """Runs, parameters, metrics and artifacts through ``mlflow.MlflowClient``."""

    def __init__(self, tracking_uri: str | None = None) -> None:
        try:
            from mlflow import MlflowClient
        except ImportError:
            raise CxraugError("--track mlflow needs MLflow: pip install 'cxraug[mlflow]'") from None
        from mlflow.exceptions import MlflowException

        try:
            self.client = MlflowClient(tracking_uri=tracking_uri)
        except MlflowException as exc:
            raise CxraugError(f"--tracking-uri {tracking_uri}: {str(exc).splitlines()[0]}") from None

    def experiment(self, name: str) -> str:
        """The id of experiment ``name``, created when missing (the first call to the store: a store MLflow
        refuses stops here with MLflow's reason)."""
        from mlflow.exceptions import MlflowException

        try:
            exp = self.client.get_experiment_by_name(name)
            return exp.experiment_id if exp is not None else self.client.create_experiment(name)
        except MlflowException as exc:
            raise CxraugError(f"MLflow store {self.client.tracking_uri}: {str(exc).splitlines()[0]}") from None

    def find(self, experiment_id: str, tags: dict[str, str]) -> str | None:
        """The id of the newest run of the experiment carrying all ``tags``, or None."""
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = self.client.search_runs([experiment_id], filter_string=query, max_results=1,
                                       order_by=["attributes.start_time DESC"])
        return runs[0].info.run_id if runs else None

    def start(self, experiment_id: str, name: str, tags: dict[str, str], parent: str | None = None) -> str:
        """A new run (nested under ``parent`` when given); returns its id."""
        tags = {**tags, **({"mlflow.parentRunId": parent} if parent else {})}
        return self.client.create_run(experiment_id, run_name=name, tags=tags).info.run_id

    def log(self, run_id: str, params: dict[str, Any] | None = None, metrics: dict[str, float] | None = None,
            artifacts: Iterable[tuple[Path, str | None]] = (), step: int = 0) -> None:
        """Parameters (flattened), metrics at ``step`` and files (``(path, folder in the run or None)``)."""
        import time

        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        params_ = [Param(k, v) for k, v in flatten(params or {}).items()]
        metrics_ = [Metric(k, v, now, step) for k, v in (metrics or {}).items()]
        for i in range(0, max(len(params_), len(metrics_)), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(run_id, params=params_[i:i + 100], metrics=metrics_[i:i + 100])
        for path, folder in artifacts:
            if Path(path).is_file():
                self.client.log_artifact(run_id, str(path), folder)

    def log_series(self, run_id: str, key: str, values: Iterable[tuple[int, float]]) -> None:
        """One metric over steps (a training curve)."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(key, float(v), now, int(s)) for s, v in values if math.isfinite(float(v))]
        for i in range(0, len(batch), 1000):  # MLflow takes at most 1000 metrics a batch
            self.client.log_batch(run_id, metrics=batch[i:i + 1000])

    def children(self, experiment_id: str, parent: str) -> dict[str, str]:
        """``cxraug.unit`` tag -> run id of the runs nested under ``parent``."""
        runs = self.client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'",
                                       max_results=50_000)
        return {r.data.tags["cxraug.unit"]: r.info.run_id for r in runs if "cxraug.unit" in r.data.tags}

    def finish(self, run_id: str, failed: bool = False) -> None:
        self.client.set_terminated(run_id, "FAILED" if failed else "FINISHED")


def make_tracker(track: Track, tracking_uri: str | None = None) -> MlflowTracker | None:
    """The tracker ``--track`` asks for (None for ``none``)."""
    if track == "none":
        if tracking_uri:
            raise CxraugError("--tracking-uri is only used with --track mlflow")
        return None
    return MlflowTracker(tracking_uri)
