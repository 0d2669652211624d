"""``model.head_dropout`` (rankseg.engine.build.build_model): channel dropout on the input of an smp model's
segmentation head while training, as the RankSEG-RMA SegFormer and UPerNet heads have (``dropout: 0.1``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from rankseg.engine.build import build_model

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
LIGHT = {
    "segformer": ["model.encoder_name=mit_b0", "model.decoder_segmentation_channels=16"],
    "upernet": ["model.encoder_name=tu-convnext_atto", "model.decoder_channels=16"],
}


def _model_cfg(model: str, *extra: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", [f"model={model}", "dataset=synthetic", *LIGHT[model], *extra])
    return cfg.model


@pytest.mark.parametrize("model", list(LIGHT))
def test_rma_models_drop_head_channels_only_while_training(model):
    cfg = _model_cfg(model)
    assert cfg.head_dropout == 0.1  # the RMA repo's value
    torch.manual_seed(0)
    hooked = build_model(cfg, pretrained=False)
    plain = build_model(_model_cfg(model, "model.head_dropout=0"), pretrained=False)
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
        build_model(_model_cfg("segformer", "model.head_dropout=1.5"), pretrained=False)
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", ["model=ref_pspnet", "dataset=synthetic", "model.encoder_name=resnet18",
                                "+model.head_dropout=0.1"])  # fmt: skip
    with pytest.raises(ValueError, match="has none: remove model.head_dropout"):
        build_model(cfg.model, pretrained=False)
