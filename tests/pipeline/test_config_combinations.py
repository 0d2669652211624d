"""Configs as data: every dataset x model x loss x predict combination composes, resolves and instantiates
offline, and the instantiated pieces run on tiny tensors. Models are built once per (model, class count) with a
light encoder and ``encoder_weights=null``; rules run once per (dataset, activation)."""

from pathlib import Path

import pytest
import torch
from hydra.utils import get_object
from omegaconf import OmegaConf

from rankseg.engine.build import build_loss, build_model, build_rules, param_groups
from rankseg.engine.runs import run_identity, run_key
from rankseg.engine.train import model_logits
from rankseg.metrics import confusion_stats
from rankseg.models import MissingWeightsError
from rankseg.predict import probabilities

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


DATASETS = _options("dataset")
MODELS = _options("model")
LOSSES = _options("loss")
RULES = _options("predict")
LIGHT = {  # light variants of each model, same code path
    "deeplabv3plus": ["model.encoder_name=mobilenet_v2"],
    "pspnet": ["model.encoder_name=mobilenet_v2"],
    "fcn8": ["model.encoder_name=vgg11", "model.fc_channels=32"],
    "ref_deeplabv3plus": ["model.encoder_name=resnet18"],
    "ref_fcn8": ["model.encoder_name=vgg11", "model.fc_channels=32"],
    "ref_pspnet": ["model.encoder_name=resnet18"],
    "segformer": ["model.encoder_name=mit_b0"],
    "upernet": ["model.encoder_name=tu-convnext_atto"],
    "unet": ["model.encoder_name=resnet18"],
    "cpt": [
        "model.encoder_name=tu-swin_tiny_patch4_window7_224",
        "model.channels=16",
        "model.encoder_kwargs={embed_dim:16,depths:[1,1,1,1],num_heads:[1,1,1,1]}",
    ],
}


def test_groups_are_complete():
    assert {"deeplabv3plus", "pspnet", "fcn8"} <= set(MODELS)
    assert {"ce", "focal", "bce", "soft_dice", "b_soft_dice", "lovasz_softmax"} <= set(LOSSES)
    assert {"threshold", "argmax", "rankdice", "rma", "rankiou", "exact"} <= set(RULES)
    assert {"synthetic", "cityscapes", "voc2012", "kvasir_seg"} <= set(DATASETS)
    assert {"ade20k", "voc2012_aug", "lits", "kits"} <= set(DATASETS)  # the RankSEG-RMA tables
    assert set(LIGHT) == set(MODELS)


def test_defaults(compose):
    train = compose("train")
    assert (train.dataset.name, train.model.name, train.loss.name) == ("synthetic", "deeplabv3plus", "ce")
    assert train.model.encoder_output_stride == 16 and train.model.encoder_name == "resnet101"
    opt = train.optimizer
    assert (opt.lr, opt.momentum, opt.weight_decay, opt.backbone_lr_mult) == (0.01, 0.9, 1e-4, 0.1)
    evaluate = compose("evaluate")
    # evaluate.py finds what train.py wrote: both configs name the same run
    assert run_key(run_identity(evaluate)) == run_key(run_identity(train))
    assert str(run_key(run_identity(train))).startswith("synthetic/deeplabv3plus/ce/resnet101-seed0-")
    assert list(evaluate.predict) == ["threshold", "argmax", "rankdice"]
    assert evaluate.predict.rankdice.solver == "BA" and evaluate.predict.rankdice.output_mode == "multilabel"
    assert compose("evaluate", ["predict=[rma]"]).predict.rma.output_mode == "multiclass"
    assert compose("train", ["logger=wandb"]).logger.mode == "offline"
    assert compose("train", ["model=pspnet"]).model.encoder_name == "resnet50"
    assert compose("train", ["model=fcn8"]).model.encoder_name == "vgg16"


@pytest.mark.filterwarnings(r"ignore:\s*.hydra/launcher/submitit_slurm. is validated")
def test_slurm_launcher_composes():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", ["hydra/launcher=submitit_slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert "partition" in launcher and launcher.gpus_per_node == 1 and launcher.timeout_min > 0
    get_object(launcher._target_)


@pytest.mark.parametrize("model", MODELS)
def test_imagenet_weights_missing_gives_one_clear_message(compose, model):
    cfg = compose("train", [f"model={model}", "model.encoder_weights=imagenet"])
    try:
        build_model(cfg.model)
    except MissingWeightsError as err:
        msg = str(err)
        assert "expected" in msg and "model.encoder_weights=null" in msg
    else:  # pragma: no cover - only where the weights are cached
        pytest.skip("ImageNet weights are cached on this machine")


#: Logits of each light model on the test input, per (model, number of classes): a network is built and run once
#: per class count, not once per dataset (its config is still composed and checked for every dataset).
_LOGITS: dict[tuple[str, int], torch.Tensor] = {}


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_combination(compose, dataset, tmp_path):
    """Each model and each loss composes with the dataset and every rule (model and loss configs interpolate the
    dataset's keys, never each other's, so composing each group once per dataset covers the product); every loss
    then runs on every model's logits."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 64, 64, generator=gen)
    outputs, losses = {}, {}
    rules = f"predict=[{','.join(RULES)}]"
    for model in MODELS:
        base = [f"dataset={dataset}", f"model={model}", "model.encoder_weights=null", *LIGHT[model]]
        base.append(f"paths.data_dir={tmp_path}")
        # the evaluate config holds all four groups (dataset, model, loss, every predict rule)
        for cfg in (compose("evaluate", [*base, rules]), compose("train", base)):
            OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
        num_classes = int(cfg.dataset.num_classes)
        assert len(cfg.dataset.class_names) == num_classes
        get_object(cfg.dataset.train._target_)
        get_object(cfg.dataset.val._target_)
        if (model, num_classes) not in _LOGITS:
            net = build_model(cfg.model).eval()
            groups = param_groups(net, list(cfg.model.backbone_prefixes), 0.01, 0.1)
            lrs = {g["name"]: g["lr"] for g in groups}
            assert lrs["backbone"] == pytest.approx(0.001)
            assert lrs.get("head", 0.01) == pytest.approx(0.01)
            with torch.no_grad():
                _LOGITS[model, num_classes] = model_logits(net(x))
        outputs[model] = _LOGITS[model, num_classes]
        assert outputs[model].shape == (1, num_classes, 64, 64)
    for loss in LOSSES:
        cfg = compose("evaluate", [f"dataset={dataset}", f"loss={loss}", f"paths.data_dir={tmp_path}", rules])
        OmegaConf.to_container(cfg, resolve=True)
        assert list(cfg.predict) == RULES
        losses[loss] = build_loss(cfg.loss)
    num_classes = int(cfg.dataset.num_classes)
    for model, logits in outputs.items():
        for loss, loss_fn in losses.items():
            target = torch.randint(0, num_classes, (1, 64, 64), generator=gen)
            target[:, :4] = int(cfg.dataset.ignore_index)
            value = loss_fn(logits, target)
            assert value.ndim == 0 and torch.isfinite(value), (dataset, model, loss)
    # every rule, for both activations, on a small probability map
    rules = build_rules(compose("evaluate", [f"dataset={dataset}", f"predict=[{','.join(RULES)}]"]).predict)
    assert list(rules) == RULES
    num_classes = outputs[MODELS[0]].shape[1]
    logits = torch.cat([outputs[m] for m in MODELS[:2]])[:, :, :12, :12]
    target = torch.randint(0, num_classes, (2, 12, 12), generator=gen)
    for activation in ("softmax", "sigmoid"):
        probs = probabilities(logits, activation)
        for name, rule in rules.items():
            pred = rule(probs)
            if pred.dim() == 3:
                assert pred.shape == (2, 12, 12) and pred.dtype == torch.int64, name
            else:
                assert pred.shape == (2, num_classes, 12, 12) and pred.dtype == torch.bool, name
            tp, fp, fn = confusion_stats(pred, target, num_classes)
            assert tp.shape == (2, num_classes)


def test_cached_imagenet_weights_are_loaded_without_the_hub(compose, tmp_path, monkeypatch):
    import huggingface_hub
    from safetensors.torch import save_file
    from segmentation_models_pytorch.encoders import get_encoder

    reference = get_encoder("mobilenet_v2", weights=None).state_dict()
    save_file({k: v.contiguous() for k, v in reference.items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name, **_: str(tmp_path / name))
    cfg = compose("train", ["model.encoder_name=mobilenet_v2", "model.encoder_weights=imagenet"])
    net = build_model(cfg.model)
    for key, value in net.encoder.state_dict().items():
        if key in reference and not key.endswith("num_batches_tracked"):
            torch.testing.assert_close(value, reference[key], msg=key)


def test_cached_timm_weights_are_loaded_from_the_local_file(compose, tmp_path, monkeypatch):
    """A ``tu-`` encoder (UPerNet's ConvNeXt) with cached ImageNet weights: timm reads the checked local file, and
    the hub is never asked (its download function raises here)."""
    import huggingface_hub
    import timm
    import timm.models._hub
    from safetensors.torch import save_file

    reference = timm.create_model("convnext_atto").state_dict()
    save_file({k: v.contiguous() for k, v in reference.items()}, str(tmp_path / "model.safetensors"))
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name, **_: str(tmp_path / name))

    def no_hub(*args, **kwargs):
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(timm.models._hub, "hf_hub_download", no_hub)
    cfg = compose("train", ["model=upernet", "model.encoder_name=tu-convnext_atto", "model.encoder_weights=imagenet"])
    net = build_model(cfg.model)
    torch.testing.assert_close(net.encoder.model.stem_0.weight, reference["stem.0.weight"])
    torch.testing.assert_close(
        net.encoder.model.stages_3.blocks[0].mlp.fc1.weight, reference["stages.3.blocks.0.mlp.fc1.weight"]
    )
