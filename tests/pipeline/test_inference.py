"""Sliding-window and flip inference (rankseg/engine/inference.py): hand-averaged windows, equality with the whole
image when one window covers it, flip equal to a manual flip, and the settings' validation and record."""

import pytest
import torch
from torch import nn

from rankseg.engine.inference import InferenceSettings, infer, inference_settings, slide_logits, window_starts


def window_mean(x: torch.Tensor) -> torch.Tensor:
    """A 'network' whose every output pixel is its window's mean: windows at different places disagree."""
    return x.mean(dim=(-2, -1), keepdim=True).expand_as(x).clone()


def test_window_starts_follow_the_rma_grid():
    assert window_starts(4, 2, 1) == [0, 1, 2]
    assert window_starts(5, 2, 2) == [0, 2, 3]  # the last window moved back to end at the border
    assert window_starts(1024, 512, 342) == [0, 342, 512]  # Cityscapes width, RMA stride ceil(0.6667 x 512)
    assert window_starts(512, 512, 342) == [0]


def test_overlapping_windows_give_the_hand_averaged_logits():
    image = torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 1, 1, 4)
    # windows [0,1], [1,2], [2,3] have means 0.5, 1.5, 2.5; pixel 1 is covered by the first two, and so on
    out = slide_logits(window_mean, image, window=(1, 2), stride=(1, 1))
    torch.testing.assert_close(out.view(-1), torch.tensor([0.5, (0.5 + 1.5) / 2, (1.5 + 2.5) / 2, 2.5]))
    image = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 5)
    # stride 2: windows [0,1], [2,3], [3,4] (moved back); means 0.5, 2.5, 3.5
    out = slide_logits(window_mean, image, window=(1, 2), stride=(1, 2))
    torch.testing.assert_close(out.view(-1), torch.tensor([0.5, 0.5, 2.5, (2.5 + 3.5) / 2, 3.5]))


def test_a_window_equal_to_the_image_equals_whole_image_inference():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1)).eval()
    images = torch.randn(2, 3, 12, 10)
    whole_logits, whole_probs = infer(net, images, InferenceSettings(), "softmax")
    logits, probs = infer(net, images, InferenceSettings("slide", (12, 10), (4, 4)), "softmax")
    torch.testing.assert_close(logits, whole_logits)
    torch.testing.assert_close(probs, whole_probs)
    torch.testing.assert_close(whole_probs, net(images).softmax(1))


def test_an_image_smaller_than_the_window_is_padded_centred_with_zeros():
    # [1, 2, 3] padded to a 5-wide window: [0, 1, 2, 3, 0], whose mean 6/5 every pixel gets
    out = slide_logits(window_mean, torch.tensor([1.0, 2.0, 3.0]).view(1, 1, 1, 3), (1, 5), (1, 1))
    torch.testing.assert_close(out.view(-1), torch.full((3,), 6 / 5))
    # odd padding: [4, 6] -> [0, 4, 6, 0, 0] (the smaller half on the left); a 2-row image padded to 3 rows
    out = slide_logits(
        lambda x: x * x.shape[-1] * 10 + x.shape[-2], torch.tensor([[4.0, 6.0]] * 2).view(1, 1, 2, 2), (3, 5), (1, 1)
    )
    torch.testing.assert_close(out, torch.tensor([[4.0, 6.0]] * 2).view(1, 1, 2, 2) * 50 + 3)
    net = nn.Conv2d(3, 4, 3, padding=1)
    images = torch.randn(1, 3, 6, 5)
    manual = net(nn.functional.pad(images, (1, 2, 1, 1)))[..., 1:7, 1:6]  # 6x5 -> 8x8, cut back
    torch.testing.assert_close(slide_logits(net, images, (8, 8), (4, 4)), manual)


def test_flip_averages_the_probabilities_of_a_manual_flip():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 4, (1, 3), padding=(0, 1)), nn.Tanh(), nn.Conv2d(4, 3, (1, 3))).eval()
    images = torch.randn(2, 3, 6, 9)
    pad = nn.ReplicationPad2d((1, 1, 0, 0))
    forward = lambda x: net(pad(x))  # noqa: E731 - keeps the spatial size, not flip-symmetric
    _, probs = infer(forward, images, InferenceSettings(flip=True), "softmax")
    manual = (forward(images).softmax(1) + forward(images.flip(3)).softmax(1).flip(3)) / 2
    torch.testing.assert_close(probs, manual)
    assert not torch.allclose(probs, forward(images).softmax(1))  # the flip did change something
    settings = InferenceSettings("slide", (4, 4), (2, 3), flip=True)
    _, probs = infer(forward, images, settings, "sigmoid")
    manual = slide_logits(forward, images, (4, 4), (2, 3)).sigmoid()
    manual = (manual + slide_logits(forward, images.flip(3), (4, 4), (2, 3)).sigmoid().flip(3)) / 2
    torch.testing.assert_close(probs, manual)


def test_settings_validation_and_record():
    assert inference_settings(None) == InferenceSettings()
    assert inference_settings({"mode": "whole", "window": None, "stride": None, "flip": False}).record() is None
    slide = inference_settings({"mode": "slide", "window": [512, 1024], "stride": 342, "flip": False})
    assert slide.window == (512, 1024) and slide.stride == (342, 342)
    assert slide.record() == {"mode": "slide", "flip": False, "window": [512, 1024], "stride": [342, 342]}
    assert inference_settings({"flip": True}).record() == {"mode": "whole", "flip": True}
    for bad, words in (
        ({"mode": "tiles"}, "inference.mode"),
        ({"mode": "slide", "window": [512, 512]}, "needs inference.window"),
        ({"mode": "slide", "window": [0, 512], "stride": [1, 1]}, "positive"),
        ({"mode": "slide", "window": [1, 2, 3], "stride": [1, 1]}, "inference.window"),
        ({"flip": "yes"}, "inference.flip"),
    ):
        with pytest.raises(ValueError, match=words):
            inference_settings(bad)


# --- end to end: the RMA recipe (AdamW, warmup, iteration schedule) and sliding-window evaluation -------------
RMA_RECIPE = [
    "+optimizer.name=adamw",
    "+optimizer.no_decay_1d=true",
    "+optimizer.total_iters=4",
    "+optimizer.warmup_ratio=0.5",
    "+optimizer.warmup_start_factor=0.25",
    "optimizer.lr=6e-4",
    "optimizer.poly_power=1.0",
]
TINY = {  # light encoders and narrow decoders, same code paths
    "segformer": ["model.encoder_name=mit_b0", "model.decoder_segmentation_channels=32"],
    "upernet": ["model.encoder_name=tu-convnext_atto", "model.decoder_channels=32"],
    "unet": ["model.encoder_name=resnet18", "model.decoder_channels=[32,16,16,8,8]"],
}


@pytest.mark.parametrize(  # ~5-10 s each on 2 cores; UPerNet and U-Net under `make test-slow`
    "model", [pytest.param(m, marks=() if m == "segformer" else pytest.mark.slow) for m in sorted(TINY)]
)
def test_rma_recipe_trains_and_slide_evaluation_writes_miou_image(model, tmp_path, compose):
    from conftest import smoke_overrides

    from rankseg.engine.checkpoint import load_checkpoint
    from rankseg.engine.evaluate import run_evaluation
    from rankseg.engine.train import lr_factor, run_training

    overrides = [
        *smoke_overrides(tmp_path),
        "dataset.image_size=64",
        "dataset.crop_size=64",
        "dataset.train_crop_size=64",
        "dataset.num_val=4",
        f"model={model}",
        *TINY[model],
        *RMA_RECIPE,
    ]
    trained = run_training(compose("train", [*overrides, "logger=none", "max_iters=3"]))
    assert trained["iteration"] == 3 and trained["total_iters"] == 4  # the iteration schedule, not the epochs
    state = load_checkpoint(trained["checkpoint"])
    groups = {g["name"]: g for g in state["optimizer"]["param_groups"]}
    assert set(groups) == {"head", "backbone", "head_no_decay", "backbone_no_decay"}
    assert groups["backbone_no_decay"]["weight_decay"] == 0.0 and groups["head"]["weight_decay"] == 1e-4
    # warmup over 2 iterations from 0.25, then linear decay: factor(3) = 1 - (3 - 2) / (4 - 2) = 0.5
    assert lr_factor(1, 4, 1.0, 2.0, 0.25) == 0.5 and lr_factor(0, 4, 1.0, 2.0, 0.25) == 0.25
    assert groups["head"]["lr"] == pytest.approx(6e-4 * 0.5) and groups["backbone"]["lr"] == pytest.approx(6e-5 * 0.5)
    assert "betas" in groups["head"]  # AdamW

    slide = ["inference.mode=slide", "inference.window=[32,32]", "inference.stride=[16,16]"]
    merged = run_evaluation(compose("evaluate", [*overrides, *slide, "predict=[argmax,rma,rankdice]"]))
    assert set(merged["rules"]) == {"argmax", "rma", "rankdice"}
    for record in merged["rules"].values():
        assert 0.0 <= record["miou_image"] <= 1.0 and 0.0 <= record["mdice_image"] <= 1.0
        assert record["eval_settings"]["inference"] == {
            "mode": "slide",
            "flip": False,
            "window": [32, 32],
            "stride": [16, 16],
        }
        assert record["image_scores_averaged_over"] == "images"


@pytest.mark.parametrize(
    "fmt, model, extra",
    [
        pytest.param(
            "ade20k",
            "segformer",
            [*TINY["segformer"], "inference.window=[64,64]", "inference.stride=[43,43]"],
            marks=pytest.mark.slow,
        ),
        ("lits", "unet", [*TINY["unet"], "dataset.num_cases=5", "dataset.slice_size=64"]),
    ],
)
def test_rma_experiment_on_a_fake_tree(fmt, model, extra, tmp_path, compose):
    """experiment=rma_{fmt} itself on the fake dataset tree, made small: ADE20K's images (48x64, 64x56) are
    padded to the 64 window; LiTS scores mIoU^I per case."""
    from rankseg.data.fake import make_fake_dataset
    from rankseg.engine.evaluate import run_evaluation
    from rankseg.engine.train import run_training

    root = make_fake_dataset(fmt, tmp_path / "data")
    overrides = [
        f"experiment=rma_{fmt}",
        f"model={model}",
        f"dataset.root={root}",
        f"paths.checkpoint_dir={tmp_path / 'checkpoints'}",
        f"paths.results_dir={tmp_path / 'results'}",
        f"paths.output_dir={tmp_path / 'outputs'}",
        "dataset.crop_size=32",
        "dataset.train_crop_size=32",
        "dataset.batch_size=2",
        "dataset.num_workers=0",
        "dataset.encoder_weights=null",
        "device=cpu",
        *extra,
    ]
    trained = run_training(compose("train", [*overrides, "logger=none", "max_iters=1"]))
    assert trained["iteration"] == 1
    merged = run_evaluation(compose("evaluate", [*overrides, "predict=[argmax,rma,rankdice]"]))
    assert set(merged["rules"]) == {"argmax", "rma", "rankdice"}
    for record in merged["rules"].values():
        assert 0.0 <= record["miou_image"] <= 1.0
        assert record["image_scores_averaged_over"] == ("cases" if fmt == "lits" else "images")
