"""The fitted decoder as an MLflow model: ``mlflow.pyfunc.load_model(uri).predict(x)`` gives latents.

It is saved in PyTorch's ``torch.export`` format (MLflow's ``pt2``), a program rather than a
pickled class, so loading it needs torch and MLflow only, not this package.
"""

from __future__ import annotations

import mlflow
import numpy as np
import torch
from mlflow.models import infer_signature

from hyperexp.decode import Decoder
from hyperexp.track.store import unless_store_away

MODEL_NAME = "decoder"


def log_decoder_model(decoder: Decoder, x_example: np.ndarray) -> str | None:
    """Log the decoder in the active run, with its signature and ``x_example`` (a few rows of
    responses, float32) as input example; returns the model's URI, or None (with a warning) when
    the tracking store does not answer: the run's other updates wait in its outbox."""
    module = decoder.as_module().eval()
    with torch.no_grad():
        latents = module(torch.as_tensor(x_example)).numpy()
    info = None
    with unless_store_away("decoder model"):
        info = mlflow.pytorch.log_model(
            module,
            name=MODEL_NAME,
            serialization_format="pt2",
            signature=infer_signature(x_example, latents),
            input_example=x_example,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"],
        )
    return None if info is None else info.model_uri
