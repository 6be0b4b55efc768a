"""The fitted decoder as an MLflow model: ``mlflow.pyfunc.load_model(uri).predict(x)`` gives latents.

It is saved in PyTorch's ``torch.export`` format (MLflow's ``pt2``), a program rather than a
pickled class, so loading it needs torch and MLflow only, not this package. It is saved when the
run ends, into the run's outbox, which makes it the run's logged model when the store has it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.models import infer_signature

from hyperexp.decode import Decoder

MODEL_NAME = "decoder"


def decoder_model_saver(decoder: Decoder, x_example: np.ndarray) -> Callable[[Path], None]:
    """What saves the decoder, with its signature and ``x_example`` (a few rows of responses,
    float32) as input example, into a folder (as ``mlflow.pytorch.save_model``)."""
    module = decoder.as_module().eval()
    with torch.no_grad():
        latents = module(torch.as_tensor(x_example)).numpy()
    signature = infer_signature(x_example, latents)
    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"]

    def save(folder: Path) -> None:
        mlflow.pytorch.save_model(
            module,
            str(folder),
            serialization_format="pt2",
            signature=signature,
            input_example=x_example,
            pip_requirements=requirements,
        )

    return save
