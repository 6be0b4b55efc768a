"""How an experiment presents itself in the MLflow UI: as model training, with a description.

MLflow 3's experiment tag ``mlflow.experimentKind`` says which of the UI's views fits an
experiment: GenAI (traces, token usage) or model training (runs, charts). MLflow 3.17's UI no
longer reads it to choose the view: a per-browser toggle (or ``?workflowType=machine_learning``)
does, starting on GenAI; the tag is set for the versions and clients that do read it. A new
SQLite store also holds an empty ``Default`` experiment that nothing here uses; it is deleted
(MLflow keeps it, marked deleted, so it is not made again).
"""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.entities import Experiment, ViewType

KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
DESCRIPTION_TAG = "mlflow.note.content"  # the experiment's description in the UI
DEFAULT_EXPERIMENT_ID = "0"

DESCRIPTION = """Decoding perceived faces from fMRI with hyperexp (experiment `{name}`).

Each run is one training job (`python -m hyperexp.train`); a sweep (`-m`) is a parent run named by
its experiment, start time and what it sweeps, with its jobs as child runs and its report
(`report/`) as artifacts.

- **learning/**: per-epoch `train_loss`, `test_loss`, `validation_loss`.
- **preview/**: image card `reconstructions`: test stimuli above their reconstructions, from
  epoch 0 (untrained) on; **preview_metrics/**: their image metrics at each step.
- **test/**: end-of-run summary metrics (sort the runs table by `test/latent_similarity`).
- Params are the settings that tell runs apart; the full resolved config is `config.yaml`;
  the fitted decoder is an MLflow model (`decoder`)."""


def present_experiment(client: MlflowClient, experiment_id: str, own_store: bool) -> None:
    """Model training, described; in a store of our own (SQLite), no empty ``Default`` beside it."""
    present_as_model_training(client, client.get_experiment(experiment_id))
    if own_store:
        delete_empty_default_experiment(client)


def present_as_model_training(client: MlflowClient, experiment: Experiment) -> None:
    """Tag ``experiment`` as model training and describe it, unless it already says otherwise."""
    if KIND_TAG not in experiment.tags:
        client.set_experiment_tag(experiment.experiment_id, KIND_TAG, MODEL_TRAINING)
    if DESCRIPTION_TAG not in experiment.tags:
        client.set_experiment_tag(experiment.experiment_id, DESCRIPTION_TAG, DESCRIPTION.format(name=experiment.name))


def delete_empty_default_experiment(client: MlflowClient) -> None:
    """Delete the store's ``Default`` experiment when it holds no run (in a store of our own)."""
    default = client.get_experiment(DEFAULT_EXPERIMENT_ID)
    if default is None or default.lifecycle_stage != "active":
        return
    if not client.search_runs([DEFAULT_EXPERIMENT_ID], max_results=1, run_view_type=ViewType.ALL):
        client.delete_experiment(DEFAULT_EXPERIMENT_ID)
