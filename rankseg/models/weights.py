"""Offline checks for pretrained encoder weights (smp's Hugging Face cache, torchvision's torch-hub cache)."""

from __future__ import annotations

import os
from pathlib import Path

# torchvision's ImageNet checkpoints for the VGG backbones of FCN-8s (file names fixed by torchvision).
TORCHVISION_VGG_FILES = {
    "vgg11": "vgg11-8a719046.pth",
    "vgg13": "vgg13-19584684.pth",
    "vgg16": "vgg16-397923af.pth",
    "vgg19": "vgg19-dcbb9e9d.pth",
    "vgg11_bn": "vgg11_bn-6002323d.pth",
    "vgg13_bn": "vgg13_bn-abd245e5.pth",
    "vgg16_bn": "vgg16_bn-6c64b313.pth",
    "vgg19_bn": "vgg19_bn-c79401a0.pth",
}


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights were requested but are not in the local cache."""


def torchvision_weights_path(backbone: str) -> Path:
    """Where torchvision keeps the ImageNet checkpoint of ``backbone`` (``$TORCH_HOME/hub/checkpoints``)."""
    import torch.hub

    if backbone not in TORCHVISION_VGG_FILES:
        raise ValueError(f"unknown VGG backbone {backbone!r}; choose one of {sorted(TORCHVISION_VGG_FILES)}")
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_VGG_FILES[backbone]


def _smp_weights(encoder_name: str, weights: str) -> tuple[str, str | None] | None:
    """(repo_id, revision) of an smp encoder's weights, or None if smp does not know them."""
    from segmentation_models_pytorch.encoders import encoders

    settings = encoders.get(encoder_name, {}).get("pretrained_settings", {}).get(weights)
    if not settings or "repo_id" not in settings:
        return None
    return settings["repo_id"], settings.get("revision")


def _timm_weights(model_name: str, hint: str) -> Path:
    """The cached ImageNet weights file of a timm model (``convnext_base.fb_in22k_ft_in1k_384``: its tag picks
    the weights; no tag: timm's default), looked up in the Hugging Face cache where timm downloads it."""
    import timm
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        cfg = timm.models.get_pretrained_cfg(model_name)
    except RuntimeError:
        cfg = None
    if cfg is None or not cfg.hf_hub_id:
        raise MissingWeightsError(
            f"timm has no pretrained weights for {model_name!r} (encoder tu-{model_name}); {hint}"
        )
    repo_id = cfg.hf_hub_id
    names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
    for name in names:
        found = try_to_load_from_cache(repo_id, name)
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    raise MissingWeightsError(
        f"ImageNet weights for encoder tu-{model_name} not found in the Hugging Face cache: expected "
        f"{' or '.join(names)} of {repo_id} under {constants.HF_HUB_CACHE} (HF_HOME moves it). Download them once "
        f"with `HF_HUB_OFFLINE=0 hf download {repo_id}` on a machine with network access, {hint}"
    )


def check_pretrained_weights(encoder_name: str, encoder_weights: str | None, source: str = "smp") -> Path | None:
    """Raise :class:`MissingWeightsError` unless the requested weights are already cached locally.

    Args:
        encoder_name: smp encoder name (e.g. ``resnet101``, ``mit_b4``), a timm encoder through smp
            (``tu-convnext_base.fb_in22k_ft_in1k_384``: the weights of that timm tag, any non-null
            ``encoder_weights``), or a torchvision VGG name when ``source="torchvision"``.
        encoder_weights: ``None`` (random init, always fine) or a weights tag such as ``imagenet``.
        source: ``"smp"`` (Hugging Face hub cache) or ``"torchvision"`` (torch hub cache).

    Returns:
        The local weights file, or None when ``encoder_weights`` is None.
    """
    if encoder_weights is None:
        return None
    hint = "or train from scratch with `model.encoder_weights=null`."
    if source == "torchvision":
        path = torchvision_weights_path(encoder_name)
        if not path.is_file():
            call = f"torchvision.models.{encoder_name}(weights='DEFAULT')"
            raise MissingWeightsError(
                f"ImageNet weights for {encoder_name} not found: expected {path}. Download them once with "
                f'`python -c "import torchvision; {call}"` on a machine with network access '
                f"(or copy the file there; TORCH_HOME moves the cache), {hint}"
            )
        return path
    if encoder_name.startswith("tu-"):
        return _timm_weights(encoder_name[3:], hint)
    repo = _smp_weights(encoder_name, encoder_weights)
    if repo is None:
        raise MissingWeightsError(f"smp has no {encoder_weights!r} weights for encoder {encoder_name!r}; {hint}")
    from huggingface_hub import constants, try_to_load_from_cache

    repo_id, revision = repo
    found = [try_to_load_from_cache(repo_id, f, revision=revision) for f in ("config.json", "model.safetensors")]
    if not all(isinstance(f, str) and os.path.isfile(f) for f in found):
        raise MissingWeightsError(
            f"ImageNet weights for encoder {encoder_name} not found in the Hugging Face cache: expected "
            f"model.safetensors and config.json of {repo_id} under {constants.HF_HUB_CACHE} "
            f"(HF_HOME moves it). "
            f"Download them once with `HF_HUB_OFFLINE=0 hf download {repo_id}"
            f"{' --revision ' + revision if revision else ''}` on a machine with network access, {hint}"
        )
    return Path(found[1])
