"""The RankSEG-RMA heads: ``model.head_dropout`` (channel dropout on the input of an smp model's segmentation head
while training, rankseg.engine.build.build_model) and the auxiliary head (rankseg/models/aux.py): what the model
returns in training and evaluation, both against hand computations, the weighted loss, and the errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from rankseg.engine.build import build_model
from rankseg.models.aux import aux_loss

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
LIGHT = {
    "segformer": ["model.encoder_name=mit_b0", "model.decoder_segmentation_channels=16"],
    "upernet": ["model.encoder_name=tu-convnext_atto", "model.decoder_channels=16"],
}


def _cfg(model: str, *extra: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("train", [f"model={model}", "dataset=synthetic", *LIGHT.get(model, []), *extra])


@pytest.mark.parametrize("model", list(LIGHT))
def test_training_returns_main_and_stage3_logits_evaluation_the_main_ones(model):
    cfg = _cfg(model, "model.head_dropout=0")  # no dropout: the hand computation below is deterministic
    assert (cfg.model.aux_channels, cfg.model.main_weight, cfg.model.aux_weight) == (256, 0.5, 0.5)  # the RMA recipe
    torch.manual_seed(0)
    net = build_model(cfg.model, pretrained=False)
    plain = build_model(_cfg(model, "model.aux_channels=0").model, pretrained=False)
    aux_keys = {k for k in net.state_dict() if k.startswith("aux_head.")}
    assert aux_keys and set(net.state_dict()) - aux_keys == set(plain.state_dict())
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if k not in aux_keys})
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(net.eval()(x), plain.eval()(x))  # evaluation: the main logits alone, unchanged
        net.train()
        torch.manual_seed(5)
        main, aux = net(x)
        torch.manual_seed(5)
        stage = net.encoder(x)[-2]  # the second-deepest stage, as the RMA repo's features[-2]
        expected = F.interpolate(net.aux_head(stage), size=(64, 64), mode="bilinear", align_corners=False)
    assert main.shape == aux.shape == (2, 5, 64, 64)
    assert torch.allclose(aux, expected, atol=1e-6)
    assert net.aux_head[0].in_channels == net.encoder.out_channels[-2] and net.aux_head[0].out_channels == 256


def test_loss_weighs_main_and_auxiliary_logits():
    gen = torch.Generator().manual_seed(1)
    main, aux = torch.randn(2, 3, 4, 4, generator=gen), torch.randn(2, 3, 4, 4, generator=gen)
    target = torch.randint(0, 3, (2, 4, 4), generator=gen)
    ce = torch.nn.CrossEntropyLoss()
    got = aux_loss(ce, (main, aux), target, 0.5, 0.5)
    assert torch.allclose(got, 0.5 * F.cross_entropy(main, target) + 0.5 * F.cross_entropy(aux, target))
    assert torch.equal(aux_loss(ce, main, target), ce(main, target))  # no auxiliary weight: the plain loss
    assert torch.equal(aux_loss(ce, (main, aux), target), ce(main, target))  # pairs without a weight: main only
    with pytest.raises(ValueError, match="returns no auxiliary logits in training: set model.aux_channels"):
        aux_loss(ce, main, target, 0.5, 0.5)


def test_aux_head_needs_an_smp_encoder():
    cfg = _cfg("ref_pspnet", "model.encoder_name=resnet18", "+model.aux_channels=256")
    with pytest.raises(ValueError, match="has none: remove model.aux_channels and model.aux_weight"):
        build_model(cfg.model, pretrained=False)


def test_the_readme_overrides_give_deeplabv3plus_the_rma_heads():
    """README (RankSEG-RMA, differences): DeepLabV3+ rows train like the RMA code with four overrides."""
    extra = ["model.encoder_name=resnet18", "+model.head_dropout=0.1", "+model.aux_channels=256",
             "+model.main_weight=0.5", "+model.aux_weight=0.5"]  # fmt: skip
    net = build_model(_cfg("deeplabv3plus", *extra).model, pretrained=False)
    main, aux = net.train()(torch.rand(2, 3, 64, 64))
    assert main.shape == aux.shape == (2, 5, 64, 64)
    assert len(net.segmentation_head._forward_pre_hooks) == 1  # the dropout
    assert net.eval()(torch.rand(2, 3, 64, 64)).shape == (2, 5, 64, 64)


def test_reference_pspnet_trains_its_auxiliary_head_when_asked():
    """configs/model/ref_pspnet.yaml: model.use_aux=true +model.aux_weight=0.4 gives the reference trainer's loss."""
    cfg = _cfg("ref_pspnet", "model.encoder_name=resnet18", "model.use_aux=true", "+model.aux_weight=0.4")
    net = build_model(cfg.model, pretrained=False).train()
    output = net(torch.rand(2, 3, 64, 64))
    target = torch.randint(0, 5, (2, 64, 64))
    ce = torch.nn.CrossEntropyLoss()
    loss = aux_loss(ce, output, target, float(cfg.model.get("main_weight", 1.0)), float(cfg.model.aux_weight))
    assert torch.allclose(loss, ce(output[0], target) + 0.4 * ce(output[1], target))


def _model_node(model: str, *extra: str):
    return _cfg(model, *extra).model


@pytest.mark.parametrize("model", list(LIGHT))
def test_rma_models_drop_head_channels_only_while_training(model):
    cfg = _model_node(model)
    assert cfg.head_dropout == 0.1  # the RMA repo's value
    torch.manual_seed(0)
    hooked = build_model(cfg, pretrained=False)
    plain = build_model(_model_node(model, "model.head_dropout=0"), pretrained=False)
    assert hooked.state_dict().keys() == plain.state_dict().keys()  # no parameter added or renamed
    plain.load_state_dict(hooked.state_dict())
    x = torch.rand(2, 3, 64, 64)
    hooked.eval(), plain.eval()
    with torch.no_grad():
        assert torch.equal(hooked(x), plain(x))  # evaluation: unaffected
        hooked.segmentation_head.train()  # the head alone in training mode: the only random step is the dropout
        torch.manual_seed(1)
        out = hooked(x)
        decoded = plain.decoder(plain.encoder(x))
        torch.manual_seed(1)
        expected = plain.segmentation_head(torch.nn.functional.dropout2d(decoded, 0.1, True))
    assert torch.equal(out, expected) and not torch.equal(out, plain(x))


def test_head_dropout_errors_name_the_key_and_the_fix():
    with pytest.raises(ValueError, match=r"model.head_dropout must be in \[0, 1\), got 1.5"):
        build_model(_model_node("segformer", "model.head_dropout=1.5"), pretrained=False)
    cfg = _cfg("ref_pspnet", "model.encoder_name=resnet18", "+model.head_dropout=0.1")
    with pytest.raises(ValueError, match="has none: remove model.head_dropout"):
        build_model(cfg.model, pretrained=False)
