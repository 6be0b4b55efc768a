"""The run's data as MLflow dataset inputs (the runs table's Dataset column): per split the
responses as features and the latents as targets, with an exact digest and the subjects' folder."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
from mlflow.data.dataset_source_registry import get_dataset_source_from_json

from hyperexp.data.cache import content_key
from hyperexp.data.variants import DecodingData

CONTEXTS = {"train": "training", "validation": "validation", "test": "test"}


def dataset_inputs(data: DecodingData) -> list[tuple[dict, str]]:
    """Per split of ``data`` (training first: the UI lists it), the dataset entity (as a dict, the
    form the outbox keeps on disk) and its context."""
    source = None
    if data.files:  # a local source named directly (resolving a path finds MLflow's local source twice)
        folder = str(Path(data.files[0]).parent.resolve())
        source = get_dataset_source_from_json(json.dumps({"uri": folder}), source_type="local")
    inputs = []
    for split, (x, t) in data.splits().items():
        digest = content_key([x, t])[:16]
        dataset = mlflow.data.from_numpy(x, targets=t, source=source, name=data.name, digest=digest)
        inputs.append((dataset._to_mlflow_entity().to_dictionary(), CONTEXTS[split]))
    return inputs
