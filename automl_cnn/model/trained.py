"""A trained network with everything needed to use it: classes, input shape, preprocessing.

Saved as ``model.safetensors`` (weights) plus ``model.json`` (architecture, training settings,
classes, preprocessing): loading builds the network from the JSON and reads tensors only, so no
code is ever unpickled from a file. An ensemble is one model too (format ``automl-cnn/2``): its
``model.json`` lists each member's architecture and weight, and its network averages the
members' probabilities (:class:`~automl_cnn.model.ensemble_net.EnsembleNet`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from automl_cnn.errors import UserInputError
from automl_cnn.model.architecture import Candidate
from automl_cnn.model.builder import build_model
from automl_cnn.model.ensemble_net import EnsembleNet

FORMAT = "automl-cnn/1"
ENSEMBLE_FORMAT = "automl-cnn/2"  # several members
WEIGHTS = "model.safetensors"
META = "model.json"


class _Probabilities(nn.Module):
    """The network followed by a softmax: what exported and served models return."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.network(x), dim=1)


@dataclass
class TrainedModel:
    network: nn.Module  # images in [0, 1], NCHW float -> logits
    candidate: Candidate
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    metrics: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # data name, fingerprint, search ids...
    members: tuple[tuple[Candidate, float], ...] = ()  # an ensemble's (candidate, weight); () for one network

    @property
    def is_ensemble(self) -> bool:
        return len(self.members) > 1

    @property
    def lead_network(self) -> nn.Module:
        """The network of the first (heaviest) member, or the only one (for pictures of it)."""
        return self.network.members[0] if isinstance(self.network, EnsembleNet) else self.network

    @classmethod
    def from_members(
        cls,
        members: list[tuple[Candidate, dict[str, torch.Tensor], float]],
        input_shape: tuple[int, int, int],
        class_names: tuple[str, ...],
        mean: tuple[float, ...],
        std: tuple[float, ...],
        **kwargs: Any,
    ) -> TrainedModel:
        """One model from (candidate, weights, ensemble weight) members; a single member is a plain model."""
        if len(members) == 1:
            return cls.from_weights(members[0][0], members[0][1], input_shape, class_names, mean, std, **kwargs)
        nets = [cls.from_weights(c, w, input_shape, class_names, mean, std).network for c, w, _ in members]
        net = EnsembleNet(nets, [w for _, _, w in members]).eval()
        chosen = tuple((c, float(w)) for c, _, w in members)
        c, h, w = input_shape
        return cls(net, members[0][0], (c, h, w), tuple(class_names), tuple(mean), tuple(std), members=chosen, **kwargs)

    @classmethod
    def from_weights(
        cls,
        candidate: Candidate,
        weights: dict[str, torch.Tensor],
        input_shape: tuple[int, int, int],
        class_names: tuple[str, ...],
        mean: tuple[float, ...],
        std: tuple[float, ...],
        **kwargs: Any,
    ) -> TrainedModel:
        net = build_model(candidate.architecture, input_shape, len(class_names), mean, std)
        net.load_state_dict(weights)
        net.eval()
        c, h, w = input_shape
        return cls(net, candidate, (c, h, w), tuple(class_names), tuple(mean), tuple(std), **kwargs)

    # -- inference -----------------------------------------------------------------------------
    def inference_module(self) -> nn.Module:
        """images in [0, 1] -> class probabilities; for MLflow, TorchScript and ONNX."""
        return _Probabilities(self.network).eval()

    @torch.inference_mode()
    def predict_proba(self, x: np.ndarray | torch.Tensor, batch_size: int = 512) -> np.ndarray:
        """Probabilities for images ``x`` (NCHW; uint8 0-255 or float 0-1)."""
        t = torch.as_tensor(x)
        t = t.float() / 255.0 if t.dtype == torch.uint8 else t.float()
        self.network.eval()
        out = [torch.softmax(self.network(t[i : i + batch_size]), dim=1) for i in range(0, len(t), batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, len(self.class_names)), np.float32)

    def predict(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        return self.predict_proba(x).argmax(axis=1)

    def read_images(self, paths: list[str] | list[Path]) -> np.ndarray:
        """Image files prepared exactly as the training images were (channels, size)."""
        from automl_cnn.data.pixels import read_image

        mode = "L" if self.input_shape[0] == 1 else "RGB"
        size = (self.input_shape[1], self.input_shape[2])
        return (
            np.stack([read_image(p, mode, size) for p in paths])
            if paths
            else np.zeros((0, *self.input_shape), np.uint8)
        )

    def predict_files(self, paths: list[str] | list[Path]) -> np.ndarray:
        """Class probabilities for image files."""
        return self.predict_proba(self.read_images(paths))

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float((self.predict(x) == y).mean())

    # -- files ---------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        ensemble = {}
        if self.is_ensemble:
            ensemble["ensemble"] = [
                {"candidate": c.to_dict(), "weight": w, "architecture_summary": c.architecture.describe()}
                for c, w in self.members
            ]
        return {
            "format": ENSEMBLE_FORMAT if self.is_ensemble else FORMAT,
            "candidate": self.candidate.to_dict(),
            "architecture_summary": self.candidate.architecture.describe(),
            **ensemble,
            "input_shape": list(self.input_shape),
            "class_names": list(self.class_names),
            "normalization": {"mean": list(self.mean), "std": list(self.std)},
            "preprocessing": {
                "channels": self.input_shape[0],
                "mode": "L" if self.input_shape[0] == 1 else "RGB",
                "height": self.input_shape[1],
                "width": self.input_shape[2],
                "scale": "pixel / 255, then the model normalises with the stored mean and std",
            },
            "output": "class probabilities (softmax) from exported models; logits from the network",
            "metrics": self.metrics,
            "info": self.info,
        }

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.network.state_dict().items()}
        save_file(state, str(folder / WEIGHTS))
        (folder / META).write_text(json.dumps(self.metadata(), indent=2), encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> TrainedModel:
        folder = Path(folder)
        meta_path, weights_path = folder / META, folder / WEIGHTS
        if not meta_path.is_file() or not weights_path.is_file():
            raise UserInputError(
                f"{folder}: not a model folder (needs {META} and {WEIGHTS}); give a search's output folder"
            )
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") not in (FORMAT, ENSEMBLE_FORMAT):
            raise UserInputError(
                f"{meta_path}: unknown model format {meta.get('format')!r}; expected {FORMAT} or {ENSEMBLE_FORMAT}"
            )
        shape, names = tuple(meta["input_shape"]), tuple(meta["class_names"])
        mean, std = tuple(meta["normalization"]["mean"]), tuple(meta["normalization"]["std"])
        extra = {"metrics": meta.get("metrics", {}), "info": meta.get("info", {})}
        weights = load_file(str(weights_path))
        if meta["format"] == FORMAT:
            return cls.from_weights(Candidate.from_dict(meta["candidate"]), weights, shape, names, mean, std, **extra)
        members = [(Candidate.from_dict(m["candidate"]), float(m["weight"])) for m in meta["ensemble"]]
        nets = [build_model(c.architecture, shape, len(names), mean, std) for c, _ in members]
        net = EnsembleNet(nets, [w for _, w in members])
        net.load_state_dict(weights)
        c, h, w = shape
        return cls(net.eval(), members[0][0], (c, h, w), names, mean, std, members=tuple(members), **extra)

    def save_torchscript(self, path: Path) -> None:
        import warnings

        example = torch.rand(2, *self.input_shape)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, still asked for
            scripted = torch.jit.trace(self.inference_module(), example)
        scripted.save(str(path))
