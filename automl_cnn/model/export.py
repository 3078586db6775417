"""Exporting a trained model: ONNX (checked against PyTorch with onnxruntime) or TorchScript.

Both take images in [0, 1] (NCHW float32, any batch size) and return class probabilities; the
normalisation is inside the graph.
"""

from __future__ import annotations

import io
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import torch

from automl_cnn.errors import UserInputError
from automl_cnn.model.trained import TrainedModel

TOLERANCE = 1e-4
FORMATS = ("onnx", "torchscript")


def export_onnx(model: TrainedModel, path: Path, check: bool = True) -> float:
    """Write ``path`` (ONNX, dynamic batch); returns the largest difference from PyTorch."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserInputError(
            "ONNX export needs onnx, onnxscript and onnxruntime: pip install 'automl-cnn[onnx]'"
        ) from None
    module = model.inference_module()
    example = torch.rand(2, *model.input_shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=True,
            input_names=["images"],
            output_names=["probabilities"],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
        )
    if not check:
        return 0.0
    x = np.random.default_rng(0).random((5, *model.input_shape), dtype=np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    diff = float(np.abs(got - want).max())
    if diff > TOLERANCE:
        path.unlink(missing_ok=True)
        raise RuntimeError(f"the ONNX model differs from PyTorch by {diff:.2e} (> {TOLERANCE}); not written")
    return diff


def export_model(model: TrainedModel, fmt: str, path: Path) -> str:
    """Export in ``fmt``; returns a one-line description of what was written."""
    if fmt == "onnx":
        diff = export_onnx(model, path)
        return f"wrote {path} (ONNX; outputs match PyTorch within {diff:.1e} on onnxruntime)"
    if fmt == "torchscript":
        model.save_torchscript(path)
        return f"wrote {path} (TorchScript)"
    raise UserInputError(f"unknown export format {fmt!r}; use one of: {', '.join(FORMATS)}")
