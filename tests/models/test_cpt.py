"""CPT (rankseg/models/cpt.py) on tiny encoders: output shapes at square and non-square sizes (NHWC Swin and NCHW
CNN features), the class-prototype memory's momentum rule on a hand-computed case (training mode only), the memory
in the state dict, the cached-weights path, and train.py + evaluate.py on synthetic data."""

from __future__ import annotations

import json

import pytest
import torch

from rankseg.models import CPTSegmenter, MissingWeightsError
from rankseg.models.cpt import CategoryBlock, CategoryFeatures

TINY_SWIN = {"embed_dim": 16, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1)}


def tiny_cpt(classes: int = 5, **kwargs) -> CPTSegmenter:
    torch.manual_seed(0)
    args = {"encoder_name": "tu-swin_tiny_patch4_window7_224", "img_size": 64, "channels": 16}
    return CPTSegmenter(classes, **{**args, "encoder_kwargs": TINY_SWIN, **kwargs})


@pytest.mark.parametrize("size", [(64, 64), (64, 96)])
def test_logits_have_the_input_size(size):
    net = tiny_cpt()
    assert net.channels_last  # timm's Swin gives NHWC maps
    x = torch.randn(2, 3, *size)
    out = net.train()(x)
    assert out.shape == (2, 5, *size) and torch.isfinite(out).all()
    out.mean().backward()
    assert net.decoder.blocks[0].categories.mask[1].weight.grad.abs().sum() > 0
    with torch.no_grad():
        assert net.eval()(x[:1]).shape == (1, 5, *size)


def test_nchw_encoder_features():
    torch.manual_seed(0)
    net = CPTSegmenter(3, "tu-resnet10t", img_size=None, channels=16).eval()
    assert not net.channels_last
    with torch.no_grad():
        assert net(torch.randn(1, 3, 64, 96)).shape == (1, 3, 64, 96)


def hand_features() -> CategoryFeatures:
    """4 channels, 2 classes: uniform soft masks (class feature = spatial mean of the map), identity projections,
    keys = values = the blended class features; memory rows e1 and e2."""
    layer = CategoryFeatures(channels=4, classes=2, use_memory=True, groups=4)
    with torch.no_grad():
        layer.mask[0].weight.fill_(1.0)
        layer.mask[1].weight.zero_()
        layer.align.weight.fill_(1.0)
        layer.to_kv.weight.copy_(torch.cat([torch.eye(4), torch.eye(4)]))
        layer.to_kv.bias.zero_()
        layer.memory.copy_(torch.eye(2, 4))
    return layer


def test_memory_follows_the_momentum_rule_in_training_mode_only():
    # two images of constant maps (2, 0, 0, 0) and (0, 0, 2, 0): their class features, batch mean (1, 0, 1, 0),
    # normalised (1, 0, 1, 0) / sqrt(2) =: u
    x = torch.zeros(2, 4, 2, 3)
    x[0, 0], x[1, 2] = 2.0, 2.0
    layer = hand_features().eval()
    kv = layer(x, momentum=0.5)
    torch.testing.assert_close(layer.memory, torch.eye(2, 4))  # evaluation: unchanged
    # the blend 0.5 * features + 0.5 * memory, e.g. image 0: class 0 (1.5, 0, 0, 0), class 1 (1, 0.5, 0, 0)
    blend = torch.tensor([[[1.5, 0, 0, 0], [1, 0.5, 0, 0]], [[0.5, 0, 1, 0], [0, 0.5, 1, 0]]])
    torch.testing.assert_close(kv, torch.cat([blend, blend], dim=-1))

    kv_train = layer.train()(x, momentum=0.5)
    torch.testing.assert_close(kv_train, kv)  # the blend used the memory from before the update
    r = 0.5 / 2**0.5
    expected = torch.tensor([[0.5 + r, 0, r, 0], [r, 0.5, r, 0]])  # 0.5 * e_l + 0.5 * u
    torch.testing.assert_close(layer.memory, expected)
    layer(x, momentum=0.5)
    torch.testing.assert_close(layer.memory, 0.5 * expected + 0.5 * torch.tensor([2**-0.5, 0, 2**-0.5, 0]))
    assert not any(p is layer.memory for p in layer.parameters())


def test_block_is_its_definition_head_by_head():
    """Keys are the first half of the class embedding's channels and values the second, each cut into heads of
    d channels; the weights are softmax(max - q.k / sqrt(d)) over the classes (the authors' form)."""
    torch.manual_seed(0)
    channels, classes, heads = 8, 3, 2
    block = CategoryBlock(channels, classes, num_heads=heads).eval()
    low, high = torch.randn(1, channels, 2, 3), torch.randn(1, channels, 3, 2)
    q = block.query(block.norm_low(low)).flatten(2)[0].T  # positions x channels
    kv = block.categories(block.norm_high(high), momentum=0.2)[0]  # classes x 2 channels
    d = channels // heads
    parts = []
    for h in range(heads):
        scores = q[:, h * d : (h + 1) * d] @ kv[:, h * d : (h + 1) * d].T / d**0.5
        weights = (scores.max(dim=1, keepdim=True).values - scores).softmax(dim=1)
        parts.append(weights @ kv[:, channels + h * d : channels + (h + 1) * d])
    attended = torch.cat(parts, dim=1).T.reshape(1, channels, 2, 3)
    out = low + block.proj(attended)
    expected = out + block.mlp(block.norm_mlp(out))
    torch.testing.assert_close(block(low, high, momentum=0.2), expected)


def test_memory_is_in_the_state_dict():
    net = tiny_cpt()
    keys = [k for k in net.state_dict() if k.endswith(".memory")]
    assert keys == [f"decoder.blocks.{i}.categories.memory" for i in range(3)]
    memory = net.state_dict()[keys[0]].clone()
    assert memory.shape == (5, 16)
    torch.testing.assert_close(memory.norm(dim=1), torch.ones(5))  # unit prototypes at initialisation
    net.train()(torch.randn(2, 3, 64, 64))
    other = tiny_cpt()
    other.load_state_dict(net.state_dict())
    torch.testing.assert_close(other.state_dict()[keys[0]], net.state_dict()[keys[0]])
    assert not torch.equal(other.state_dict()[keys[0]], memory)  # the trained memory, not the initial one
    assert not [k for k in tiny_cpt(use_memory=False).state_dict() if k.endswith(".memory")]


def test_missing_or_cached_timm_weights(tmp_path, monkeypatch, compose):
    """No cached file: the one-line error naming the hub repo. A cached file (weights of the classifier at its
    pretraining size 224, like Swin-L's 384 ones, loaded into an encoder built for 256 as CPT's is for 512, same
    window): timm reads it, directly and through build_model, and never asks the hub."""
    import huggingface_hub
    import timm
    import timm.models._hub
    from safetensors.torch import save_file

    from rankseg.engine.build import build_model

    with pytest.raises(MissingWeightsError, match="timm/swin_tiny_patch4_window7_224"):
        tiny_cpt(encoder_weights="imagenet")
    reference = timm.create_model("swin_tiny_patch4_window7_224", **TINY_SWIN).state_dict()
    save_file({k: v.contiguous() for k, v in reference.items()}, str(tmp_path / "model.safetensors"))
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name, **_: str(tmp_path / name))

    def no_hub(*args, **kwargs):
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(timm.models._hub, "hf_hub_download", no_hub)
    net = tiny_cpt(encoder_weights="imagenet", img_size=256)
    for key in ("layers.3.blocks.0.attn.qkv.weight", "layers.3.blocks.0.attn.relative_position_bias_table"):
        torch.testing.assert_close(net.encoder.get_parameter(key.replace("layers.", "layers_")), reference[key])
    light = [f"model.{k}={v}" for k, v in (("channels", 16), ("img_size", 256), ("encoder_weights", "imagenet"))]
    kwargs = "model.encoder_kwargs={embed_dim:16,depths:[1,1,1,1],num_heads:[1,1,1,1]}"
    cfg = compose("train", ["model=cpt", "model.encoder_name=tu-swin_tiny_patch4_window7_224", kwargs, *light])
    net = build_model(cfg.model)
    torch.testing.assert_close(
        net.encoder.layers_0.blocks[0].mlp.fc1.weight, reference["layers.0.blocks.0.mlp.fc1.weight"]
    )


def test_train_and_evaluate_with_rma(tmp_path, compose):
    """train.py's and evaluate.py's functions: 2 AdamW iterations on 32x32 synthetic images, then argmax and RMA
    (~2 s on 2 CPU cores)."""
    from conftest import smoke_overrides

    from rankseg.engine.evaluate import run_evaluation
    from rankseg.engine.train import run_training

    overrides = [
        *smoke_overrides(tmp_path, num_val=4),
        "model=cpt",
        "model.encoder_name=tu-swin_tiny_patch4_window7_224",
        "model.channels=16",
        "model.encoder_kwargs={embed_dim:16,depths:[1,1,1,1],num_heads:[1,1,1,1]}",
        "model.encoder_weights=null",
        "+optimizer.name=adamw",
        "+optimizer.no_decay_1d=true",
        "+optimizer.total_iters=2",
        "optimizer.lr=6e-4",
    ]
    trained = run_training(compose("train", [*overrides, "logger=none", "max_iters=2"]))
    assert trained["iteration"] == 2
    merged = run_evaluation(compose("evaluate", [*overrides, "predict=[argmax,rma]"]))
    assert set(merged["rules"]) == {"argmax", "rma"}
    (path,) = (tmp_path / "results").rglob("metrics.json")
    written = json.loads(path.read_text())
    assert written["model"] == "cpt"
    for record in written["rules"].values():
        assert 0.0 <= record["miou_image"] <= 1.0
