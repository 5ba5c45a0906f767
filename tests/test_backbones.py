import numpy as np
import pytest
import torch
from skimage import data

from ebsd_core.backbones import REGISTRY, create_model, describe_registry, get_spec, load_weights_file, select_device
from ebsd_core.errors import ModelError


@pytest.fixture(scope="module")
def imagenet_model():
    import timm

    from ebsd_core.backbones import _package_state_dict

    spec = get_spec("efficientnet_lite0")
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    model.load_state_dict(_package_state_dict(spec, model))
    return model.eval()


@pytest.mark.parametrize("name,expected", [("chelsea", 285), ("coffee", 967)])
def test_shipped_weights_are_real_imagenet(imagenet_model, name, expected):
    from PIL import Image

    image = Image.fromarray(getattr(data, name)()).resize((224, 224))
    x = torch.tensor(np.asarray(image) / 255.0).permute(2, 0, 1).float()
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        logits = imagenet_model(((x - mean) / std)[None])
    assert int(logits.argmax()) == expected


def test_grey_stem_is_summed_rgb(imagenet_model):
    grey = create_model("efficientnet_lite0", 6, pretrained=True, channel_mode="adapt")
    assert grey.conv_stem.weight.shape[1] == 1
    assert torch.allclose(grey.conv_stem.weight, imagenet_model.conv_stem.weight.sum(1, keepdim=True))
    replicated = create_model("efficientnet_lite0", 6, pretrained=True, channel_mode="replicate")
    out = replicated(torch.zeros(2, 1, 64, 64))
    assert out.shape == (2, 6)


def test_hub_weights_come_from_the_cache_and_an_unreachable_hub_is_refused_at_once(tmp_path, monkeypatch):
    """timm's download retried an unreachable hub for 52 s before the refusal; weights in the Hugging Face cache
    are used without asking the hub."""
    import timm
    from huggingface_hub import constants
    from safetensors.torch import save_file

    offline_before = constants.HF_HUB_OFFLINE
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "ENDPOINT", "https://hub.invalid")
    with pytest.raises(
        ModelError, match="no offline ImageNet weights for test_efficientnet, and this machine cannot reach hub.invalid"
    ):
        create_model("test_efficientnet", 2, pretrained=True, channel_mode="replicate")
    cached = timm.create_model("test_efficientnet", pretrained=False).state_dict()
    snapshot = tmp_path / "models--timm--test_efficientnet.r160_in1k" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    save_file({k: v.contiguous() for k, v in cached.items()}, snapshot / "model.safetensors")
    assert get_spec("test_efficientnet").offline_pretrained  # the Train page offers it; `backbones` says why
    model = create_model("test_efficientnet", 2, pretrained=True, channel_mode="replicate")
    assert torch.equal(model.net.conv_stem.weight, cached["conv_stem.weight"])
    assert offline_before == constants.HF_HUB_OFFLINE  # offline only while the cache was read


def test_registry_says_what_is_offline():
    rows = {r["name"]: r for r in describe_registry()}
    assert rows["efficientnet_lite0"]["pretrained_offline"] is True
    assert {"resnet18", "mobilenetv3_small_100", "convnext_atto", "xception41"} <= set(REGISTRY)
    assert rows["resnet18"]["pretrained_offline"] is False


def test_scratch_and_local_weights(tmp_path):
    from safetensors.torch import save_file

    scratch = create_model("resnet18", 3, pretrained=False)
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in scratch.state_dict().items()}, str(path))
    loaded = create_model("resnet18", 3, weights_file=path)
    assert torch.equal(loaded.layer1[0].conv1.weight, scratch.layer1[0].conv1.weight)


def test_a_weights_file_in_a_folder_named_not_in_utf8_is_loaded(tmp_path):
    """safetensors opens UTF-8 paths alone ("Path ... is not valid UTF-8"): a file under a folder copied from an old
    Windows share (Latin-1) is read all the same."""
    from conftest import not_utf8_folder
    from safetensors.torch import save_file

    scratch = create_model("resnet18", 3, pretrained=False)
    path = not_utf8_folder(tmp_path) / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in scratch.state_dict().items()}, str(path))
    assert torch.equal(load_weights_file(path)["fc.weight"], scratch.fc.weight)


def test_bad_names_and_files(tmp_path):
    with pytest.raises(ModelError, match="unknown backbone"):
        get_spec("not_a_model")
    bad = tmp_path / "w.pt"
    bad.write_bytes(b"junk")
    with pytest.raises(ModelError, match="w.pt"):
        load_weights_file(bad)
    assert select_device("cpu").type == "cpu"


@pytest.mark.parametrize(
    "name, message",
    [("tpu", "unknown device 'tpu'"), ("opengl", "only cpu, cuda and mps are supported")]
    + ([] if torch.cuda.is_available() else [("cuda", "no CUDA GPU is available here")]),
)
def test_a_device_that_is_not_there_is_named(name, message):
    from ebsd_core.errors import InputError

    with pytest.raises(InputError, match=message):
        select_device(name)


def test_a_pickled_object_is_not_weights(tmp_path):
    import pickle

    path = tmp_path / "weights.pt"
    path.write_bytes(pickle.dumps({"not": object()}))
    with pytest.raises(ModelError, match="never pickled objects"):
        load_weights_file(path)


DRIVER_535 = (
    "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.154.05  Thu Dec 28 15:37:48 UTC 2023\nGCC version: 12\n"
)
DRIVER_580 = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build  (dvs-builder)  2025\n"


@pytest.mark.parametrize(
    "version_text, cuda, said",
    [
        (
            DRIVER_535,
            "13.0",
            "its driver (535.154.05) is older than this PyTorch's CUDA 13.0 needs (580 or later): a newer driver "
            "would let it be used",
        ),
        (DRIVER_535, "12.8", "PyTorch cannot use it (python -c 'import torch; torch.cuda.init()' says why)"),
        (DRIVER_580, "13.0", "PyTorch cannot use it (python -c 'import torch; torch.cuda.init()' says why)"),
        (DRIVER_580, None, "this PyTorch is built without CUDA: a CUDA build would use it"),
        (None, "13.0", None),  # no NVIDIA driver loaded: no GPU left unused
    ],
)
def test_an_nvidia_gpu_that_pytorch_cannot_use_is_said_with_why(tmp_path, monkeypatch, version_text, cuda, said):
    """A lab's GPU workstation whose driver was older than PyTorch's CUDA needed got "CPU" in the sidebar, and no
    word of why."""
    from ebsd_core.backbones import unused_gpu_reason

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", cuda)
    version_file = tmp_path / "version"
    if version_text is not None:
        version_file.write_text(version_text)
    reason = unused_gpu_reason(version_file)
    assert reason == (None if said is None else f"this machine has an NVIDIA GPU, but {said}")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert unused_gpu_reason(version_file) is None
