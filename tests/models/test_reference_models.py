"""The reference trainer's networks (rankseg.models.reference) against manifests made from the reference code
itself (tests/data/reference_manifests, by scripts/reference_manifest.py): every state-dict key, shape and dtype
in order, checkpoint-style loading, eval/training output geometry, and clear errors on mismatches.

Key/shape checks build on the meta device (no memory, no time); one real network per architecture is built
once per module for loading and forward passes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from rankseg.models import (
    MissingWeightsError,
    ReferenceDeepLabV3Plus,
    ReferenceFCN8,
    ReferencePSPNet,
    ReferenceStateDictError,
    load_reference_state_dict,
    reference_arch_names,
    reference_model_config,
    strip_module_prefix,
)

TESTS = Path(__file__).resolve().parents[1]
MANIFEST_DIR = TESTS / "data" / "reference_manifests"
MODEL_CONFIGS = TESTS.parent / "configs" / "model"
CLASSES = {"PSPNet": ReferencePSPNet, "DeepLab": ReferenceDeepLabV3Plus, "FCN8": ReferenceFCN8}
CLASS_COUNTS = (19, 21, 2)  # Cityscapes, VOC, Kvasir-SEG (the reference's dataset classes)
MANIFESTS = sorted(MANIFEST_DIR.glob("*.json"))
REAL = {"PSPNet": 19, "DeepLab": 21, "FCN8": 2}  # class count of the one real network built per architecture


def _manifest(arch: str, classes: int) -> dict:
    return json.loads((MANIFEST_DIR / f"{arch.lower()}_{classes}.json").read_text())


def test_manifests_cover_every_architecture_and_class_count_with_provenance():
    assert {p.name for p in MANIFESTS} == {f"{a.lower()}_{c}.json" for a in CLASSES for c in CLASS_COUNTS}
    for path in MANIFESTS:
        m = json.loads(path.read_text())
        source = m["source"]
        assert source["repo"] == "statmlben/rankseg" and source["subdir"] == "pytorch-segmentation-rankseg"
        assert re.fullmatch(r"[0-9a-f]{40}", source["commit"]), path.name
        assert all(re.fullmatch(r"[0-9a-f]{40}", sha) for sha in source["files"].values())
        assert {"models/pspnet.py", "models/resnet.py", "models/deeplabv3_plus.py", "models/fcn.py"} <= set(
            source["files"]
        )
        assert m["command"].startswith(("python", ".venv")) and "scripts/reference_manifest.py" in m["command"]
        assert m["our_config"] == reference_arch_names()[m["arch"]["type"]]
        # when generated, the reference network's weights loaded into ours gave the same eval output
        assert m["forward_parity"]["max_abs_diff"] == 0.0, path.name


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.stem)
def test_state_dict_names_shapes_and_dtypes_equal_the_reference(path):
    m = json.loads(path.read_text())
    with torch.device("meta"):
        net = CLASSES[m["arch"]["type"]](m["num_classes"])
    ours = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in net.state_dict().items()]
    assert [e[0] for e in ours] == [e[0] for e in m["state_dict"]]  # same names, same order
    assert ours == m["state_dict"]


@pytest.fixture(scope="module")
def nets() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {arch: cls(REAL[arch]).eval() for arch, cls in CLASSES.items()}


@pytest.mark.parametrize("arch", list(CLASSES))
def test_eval_forward_gives_logits_at_input_resolution(nets, arch):
    geometry = _manifest(arch, REAL[arch])["geometry"]
    x = torch.randn(*geometry["eval_input"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = nets[arch](x)
    assert isinstance(logits, torch.Tensor) and list(logits.shape) == geometry["eval_output"]
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", list(CLASSES))
def test_checkpoint_state_dict_with_module_prefix_loads_strictly(nets, arch):
    net = nets[arch]
    gen = torch.Generator().manual_seed(1)
    state = {}
    for name, shape, dtype in _manifest(arch, REAL[arch])["state_dict"]:
        value = torch.randint(0, 100, shape, generator=gen) if dtype == "int64" else torch.rand(shape, generator=gen)
        state["module." + name] = value.to(getattr(torch, dtype))
    load_reference_state_dict(net, {"epoch": 300, "state_dict": state, "arch": "DataParallel"})
    for name, value in net.state_dict().items():
        assert torch.equal(value, state["module." + name]), name


def test_pspnet_training_mode_returns_the_auxiliary_logits_like_the_reference():
    geometry = _manifest("PSPNet", 2)["geometry"]
    x = torch.randn(*geometry["train_input"])
    torch.manual_seed(0)
    net = ReferencePSPNet(2, encoder_name="resnet18").train()  # same head code, lighter backbone
    with torch.no_grad():
        out, aux = net(x)
    assert [list(out.shape), list(aux.shape)] == geometry["train_outputs"]
    frozen = ReferencePSPNet(2, encoder_name="resnet18", use_aux=False).train()
    assert isinstance(frozen(x), torch.Tensor)  # our training loop gets plain logits
    assert not any(p.requires_grad for p in frozen.auxiliary_branch.parameters())
    assert frozen.state_dict().keys() == net.state_dict().keys()


def test_other_networks_train_with_plain_logits():
    x = torch.randn(2, 3, 33, 41)
    for net in (ReferenceDeepLabV3Plus(3, encoder_name="resnet18"), ReferenceFCN8(3, "vgg11", fc_channels=8)):
        with torch.no_grad():
            out = net.train()(x)
        assert isinstance(out, torch.Tensor) and out.shape == (2, 3, 33, 41)


def test_mismatches_name_the_keys_and_shapes():
    with torch.device("meta"):
        net = ReferencePSPNet(21, encoder_name="resnet18")
    state = {"module." + k: v for k, v in net.state_dict().items()}
    del state["module.layer4.1.bn2.running_var"]
    state["module.head.weight"] = torch.zeros(1)
    state["module.master_branch.1.weight"] = torch.zeros(19, 128, 1, 1)
    with pytest.raises(ReferenceStateDictError) as err:
        load_reference_state_dict(net, state)
    msg = str(err.value)
    assert "ReferencePSPNet" in msg and "1 missing key(s): layer4.1.bn2.running_var" in msg
    assert "1 unexpected key(s): head.weight" in msg
    assert "master_branch.1.weight (checkpoint (19, 128, 1, 1), model (21, 128, 1, 1))" in msg


def test_strip_module_prefix():
    one = torch.ones(1)
    assert strip_module_prefix({"module.a.module.b": one, "c": one}) == {"a.module.b": one, "c": one}


def test_reference_config_json_arch_maps_to_our_configs():
    # the arch nodes of the fork's config.json, config_voc.json, config_cityscales.json and config_kvasir.json
    flags = {"freeze_bn": False, "freeze_backbone": False}
    psp = {"type": "PSPNet", "args": {"backbone": "resnet50", **flags}}
    deeplab = {"type": "DeepLab", "args": {"backbone": "resnet101", **flags}}
    fcn = {"type": "FCN8", "args": {"backbone": "resnet101", **flags}}
    assert reference_model_config(psp) == ("ref_pspnet", {"encoder_name": "resnet50"})
    assert reference_model_config(deeplab) == ("ref_deeplabv3plus", {"encoder_name": "resnet101", "output_stride": 16})
    assert reference_model_config(fcn) == ("ref_fcn8", {"encoder_name": "vgg16"})
    with pytest.raises(ValueError, match="Xception"):
        reference_model_config({"type": "DeepLab", "args": {"backbone": "xception"}})
    with pytest.raises(ValueError, match="UNet"):
        reference_model_config({"type": "UNet", "args": {}})
    for arch, name in reference_arch_names().items():
        cfg = yaml.safe_load((MODEL_CONFIGS / f"{name}.yaml").read_text())
        assert cfg["name"] == name and cfg["_target_"] == f"rankseg.models.{CLASSES[arch].__name__}"
        assert cfg["encoder_weights"] is None


@pytest.mark.parametrize("cls", list(CLASSES.values()), ids=lambda c: c.__name__)
def test_imagenet_weights_are_refused_with_one_clear_message(cls):
    with pytest.raises(MissingWeightsError, match=r"model\.encoder_weights=null"):
        cls(2, encoder_weights="imagenet")


def test_train_py_trains_ref_pspnet_without_its_auxiliary_head(compose, tmp_path):
    from conftest import smoke_overrides

    from rankseg.engine.train import run_training

    overrides = [*smoke_overrides(tmp_path), "logger=none", "model=ref_pspnet", "model.encoder_name=resnet18"]
    result = run_training(compose("train", [*overrides, "max_iters=2"]))
    assert result["stopped"] == "max_iters" and result["iteration"] == 2
