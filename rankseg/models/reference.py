"""The JMLR authors' networks, rebuilt so that their published checkpoints load with ``strict=True``.

The RankSEG paper's networks were trained with the authors' fork of yassouali/pytorch-segmentation
(GitHub statmlben/rankseg, folder ``pytorch-segmentation-rankseg/``). Its checkpoints ``checkpoint-epoch*.pth``
hold ``{'arch', 'epoch', 'state_dict', 'optimizer', 'monitor_best', 'config'}``; ``state_dict`` is the
``state_dict()`` of the ``torch.nn.DataParallel`` wrapper, so every key starts with ``module.``.
The classes here are written from that code's facts (module names, shapes, strides, dilations, upsampling),
not copied from it; ``tests/data/reference_manifests/`` records the reference's own state-dict keys and shapes
(made by ``scripts/reference_manifest.py`` from the reference code) and ``tests/models/test_reference_models.py``
checks the classes against them.

Reference ``config.json`` ``arch`` -> config here (``configs/model/``) -> what the reference builds:

- ``"type": "PSPNet"`` -> ``ref_pspnet`` (:class:`ReferencePSPNet`): the ``arch.args.backbone`` (``resnet50``)
  of PyTorch-Encoding's dilated ResNet (3x3 deep stem for ResNet-50/101/152), output stride 8, pyramid pooling
  {1, 2, 3, 6}, auxiliary head on layer3.
- ``"type": "DeepLab"`` -> ``ref_deeplabv3plus`` (:class:`ReferenceDeepLabV3Plus`): torchvision ResNet-101
  whatever ``backbone`` says (it only chooses ResNet over Xception and is not passed on), output stride 16
  (``arch.args.output_stride``), ASPP rates 6/12/18, decoder on layer1.
- ``"type": "FCN8"`` -> ``ref_fcn8`` (:class:`ReferenceFCN8`): torchvision VGG16 whatever ``backbone`` says
  (the configs say ``resnet101``).

Differences to the reference, none of which changes a state-dict key, a shape or an eval-mode output:
no ``freeze_bn``/``freeze_backbone``/``in_channels`` arguments; no ImageNet initialisation (weights come from a
reference checkpoint); ``encoder_name`` other than the reference's choice builds a lighter variant of the same
design (for tests), which no reference checkpoint fits; :class:`ReferencePSPNet` freezes and skips its auxiliary
head when ``use_aux=False`` (the default of ``configs/model/ref_pspnet.yaml``; the reference trains it at 0.4 x
the loss: ``model.use_aux=true +model.aux_weight=0.4`` with our ``train.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.vgg import cfgs, make_layers

from rankseg.models.fcn import _frozen_upsampler
from rankseg.models.weights import MissingWeightsError

__all__ = [
    "REFERENCE_ARCHS",
    "ReferenceDeepLabV3Plus",
    "ReferenceFCN8",
    "ReferencePSPNet",
    "ReferenceStateDictError",
    "load_reference_state_dict",
    "reference_arch_names",
    "reference_model_config",
    "strip_module_prefix",
]

# reference config.json ``arch.type`` -> our configs/model name
REFERENCE_ARCHS: dict[str, str] = {"PSPNet": "ref_pspnet", "DeepLab": "ref_deeplabv3plus", "FCN8": "ref_fcn8"}

# depth -> (block, blocks per stage); ResNet-18/34 use basic blocks and (in PyTorch-Encoding) the 7x7 stem
_RESNETS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
_VGGS = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}


class ReferenceStateDictError(RuntimeError):
    """A state dict does not fit a reference network (missing or unexpected keys, shape mismatches)."""


def _no_encoder_weights(model: str, encoder_weights: str | None) -> None:
    if encoder_weights is not None:
        raise MissingWeightsError(
            f"{model} takes its weights from a reference checkpoint, not from ImageNet "
            f"(encoder_weights={encoder_weights!r}): expected encoder_weights=null and the checkpoint loaded with "
            "rankseg.models.load_reference_state_dict; build it with `model.encoder_weights=null`."
        )


def _check_name(name: str, known: Mapping[str, Any], model: str) -> None:
    if name not in known:
        raise ValueError(f"{model}: unknown encoder_name {name!r}; choose one of {sorted(known)}")


def _init_backbone(module: nn.Module) -> None:
    """He initialisation (fan-out) of convolutions, unit BatchNorm: torchvision's and PyTorch-Encoding's rule."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _init_head(*modules: nn.Module) -> None:
    """The reference's ``initialize_weights`` rule for heads: He (fan-in) convolutions, BatchNorm bias 1e-4."""
    for module in modules:
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.constant_(m.bias, 1e-4)


def _conv_bn_relu(cin: int, cout: int, kernel: int, dilation: int = 1) -> list[nn.Module]:
    padding = 0 if kernel == 1 else dilation * (kernel // 2)
    conv = nn.Conv2d(cin, cout, kernel, padding=padding, dilation=dilation, bias=False)
    return [conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


# ----------------------------------------------------------------------------------------------- ResNet parts
class _Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride, dilation) -> 1x1 x4 residual block; the stride sits on the 3x3 convolution."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, dilations: tuple[int, int], downsample):
        super().__init__()
        d = dilations[0]
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=d, dilation=d, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class _BasicBlock(nn.Module):
    """Two 3x3 convolutions (the first strided), each with its own dilation."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int, dilations: tuple[int, int], downsample):
        super().__init__()
        d1, d2 = dilations
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=d1, dilation=d1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=d2, dilation=d2, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def _stage(
    block: type[_Bottleneck] | type[_BasicBlock],
    inplanes: int,
    planes: int,
    stride: int,
    dilations: Sequence[tuple[int, int]],
) -> nn.Sequential:
    """One ResNet stage, ``len(dilations)`` blocks; block i gets ``dilations[i]`` (conv1/conv2 of a basic block,
    the 3x3 of a bottleneck takes the first); a strided 1x1 projection on the first block where shapes change."""
    out = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != out:
        downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
    blocks = [block(inplanes, planes, stride, dilations[0], downsample)]
    blocks += [block(out, planes, 1, d, None) for d in dilations[1:]]
    return nn.Sequential(*blocks)


def _resnet_stages(
    encoder_name: str, inplanes: int, schedule: Sequence[tuple[int, Sequence[tuple[int, int]]]]
) -> tuple[list[nn.Sequential], int, int]:
    """layer1..layer4 given per stage (stride, per-block dilations); returns them, layer1's and layer4's widths."""
    kind, _ = _RESNETS[encoder_name]
    block = _Bottleneck if kind == "bottleneck" else _BasicBlock
    stages = []
    for planes, (stride, dilations) in zip((64, 128, 256, 512), schedule, strict=True):
        stages.append(_stage(block, inplanes, planes, stride, dilations))
        inplanes = planes * block.expansion
    return stages, 64 * block.expansion, inplanes


# ----------------------------------------------------------------------------------------------------- PSPNet
class _PyramidPooling(nn.Module):
    """Average-pool to b x b for each bin b, project to ``channels / len(bins)``, upsample (align_corners=True),
    concatenate with the input and fuse with a 3x3 convolution."""

    def __init__(self, channels: int, bins: Sequence[int]):
        super().__init__()
        width = channels // len(bins)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), *_conv_bn_relu(channels, width, 1)) for b in bins
        )
        self.bottleneck = nn.Sequential(*_conv_bn_relu(channels + width * len(bins), width, 3), nn.Dropout2d(0.1))

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        pooled = [F.interpolate(stage(x), size=size, mode="bilinear", align_corners=True) for stage in self.stages]
        return self.bottleneck(torch.cat([x, *pooled], dim=1))


class ReferencePSPNet(nn.Module):
    """PSPNet of the reference trainer (``models/pspnet.py`` on ``models/resnet.py``).

    Backbone: PyTorch-Encoding's dilated ResNet. ResNet-50/101/152 start with a deep stem (3x3 convolutions
    3->64 stride 2, 64->64, 64->128; BatchNorm and ReLU between them), then BatchNorm, ReLU and a 3x3/2 max pool;
    layer3 and layer4 keep stride 1 with dilations 1,2,2,... and 2,4,4 (output stride 8). ResNet-18/34 have the
    7x7 stem. Head: pyramid pooling (bins 1, 2, 3, 6) to C/4 channels, a 1x1 classifier; auxiliary head on
    layer3 (3x3 conv to C/4, BatchNorm, ReLU, dropout, 1x1 classifier). Logits are upsampled bilinearly
    (``align_corners=False``) to the input size.

    Args:
        classes: number of output channels.
        encoder_name: the reference's ``arch.args.backbone`` (``resnet50`` in the paper's configs).
        encoder_weights: must be None (weights come from a reference checkpoint).
        use_aux: training mode returns ``(logits, aux_logits)`` as the reference does (train.py weighs the second
            by ``model.aux_weight``). False (our config's default) freezes the auxiliary head and skips it; its
            weights stay in the state dict either way.
        bins: pyramid pooling grid sizes.

    Shape:
        - input: (B, 3, H, W)
        - output: (B, classes, H, W) logits; in training mode with ``use_aux`` a pair of them
    """

    def __init__(
        self,
        classes: int,
        encoder_name: str = "resnet50",
        encoder_weights: str | None = None,
        use_aux: bool = True,
        bins: Sequence[int] = (1, 2, 3, 6),
    ) -> None:
        super().__init__()
        _no_encoder_weights(type(self).__name__, encoder_weights)
        _check_name(encoder_name, _RESNETS, type(self).__name__)
        kind, depths = _RESNETS[encoder_name]
        if kind == "bottleneck":
            stem: nn.Module = nn.Sequential(
                nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(64),
                nn.ReLU(inplace=True),
                nn.Conv2d(64, 64, 3, padding=1, bias=False),
                nn.BatchNorm2d(64),
                nn.ReLU(inplace=True),
                nn.Conv2d(64, 128, 3, padding=1, bias=False),
            )
            inplanes = 128
        else:
            stem, inplanes = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), 64
        self.initial = nn.Sequential(
            stem, nn.BatchNorm2d(inplanes), nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1)
        )
        # PyTorch-Encoding's dilation schedule: a stage of dilation d starts with a block of dilation d/2
        # (basic blocks: conv1 d/2, conv2 d), except d = 2, which starts at 1.
        schedule = [
            (1, [(1, 1)] * depths[0]),
            (2, [(1, 1)] * depths[1]),
            (1, [(1, 2)] + [(2, 2)] * (depths[2] - 1)),
            (1, [(2, 4)] + [(4, 4)] * (depths[3] - 1)),
        ]
        stages, _, channels = _resnet_stages(encoder_name, inplanes, schedule)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        _init_backbone(self)
        self.master_branch = nn.Sequential(_PyramidPooling(channels, bins), nn.Conv2d(channels // 4, classes, 1))
        self.auxiliary_branch = nn.Sequential(
            *_conv_bn_relu(channels // 2, channels // 4, 3), nn.Dropout2d(0.1), nn.Conv2d(channels // 4, classes, 1)
        )
        _init_head(self.master_branch, self.auxiliary_branch)
        self.use_aux = use_aux
        if not use_aux:
            self.auxiliary_branch.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        size = x.shape[-2:]
        x = self.layer2(self.layer1(self.initial(x)))
        aux_in = self.layer3(x)
        out = F.interpolate(self.master_branch(self.layer4(aux_in)), size=size, mode="bilinear", align_corners=False)
        if self.training and self.use_aux:
            aux = self.auxiliary_branch(aux_in)
            return out, F.interpolate(aux, size=size, mode="bilinear", align_corners=False)
        return out


# ------------------------------------------------------------------------------------------------ DeepLabV3+
class _TorchvisionResNet(nn.Module):
    """torchvision's ResNet cut into ``layer0`` (7x7 stem, BatchNorm, ReLU, max pool) and ``layer1..4``, made
    dilated after the reference: at output stride 16 every 3x3 convolution of layer4 gets dilation 2 and
    stride 1 (basic blocks: both convolutions); at 8 layer3 gets 2 and layer4 4."""

    def __init__(self, encoder_name: str, output_stride: int):
        super().__init__()
        if output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
        kind, depths = _RESNETS[encoder_name]
        self.layer0 = nn.Sequential(
            nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        # the reference re-dilates the conv1 of basic blocks only when told the backbone is ResNet-18/34
        d3, d4 = (1, 2) if output_stride == 16 else (2, 4)
        schedule = [
            (1, [(1, 1)] * depths[0]),
            (2, [(1, 1)] * depths[1]),
            (2 if d3 == 1 else 1, [(d3, d3)] * depths[2]),
            (1, [(d4, d4)] * depths[3]),
        ]
        stages, self.low_channels, self.out_channels = _resnet_stages(encoder_name, 64, schedule)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        _init_backbone(self)
        _init_head(self.layer0)  # the reference re-creates layer0 with its head rule when not pretrained

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        low = self.layer1(self.layer0(x))
        return self.layer4(self.layer3(self.layer2(low))), low


class _ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1 and three dilated 3x3 branches, image pooling, 1x1 fusion to 256."""

    def __init__(self, channels: int, output_stride: int):
        super().__init__()
        rates = (6, 12, 18) if output_stride == 16 else (12, 24, 36)
        self.aspp1 = nn.Sequential(*_conv_bn_relu(channels, 256, 1))
        self.aspp2 = nn.Sequential(*_conv_bn_relu(channels, 256, 3, rates[0]))
        self.aspp3 = nn.Sequential(*_conv_bn_relu(channels, 256, 3, rates[1]))
        self.aspp4 = nn.Sequential(*_conv_bn_relu(channels, 256, 3, rates[2]))
        self.avg_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), *_conv_bn_relu(channels, 256, 1))
        self.conv1 = nn.Conv2d(256 * 5, 256, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(256)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(0.5)
        _init_head(self)

    def forward(self, x: Tensor) -> Tensor:
        pooled = F.interpolate(self.avg_pool(x), size=x.shape[-2:], mode="bilinear", align_corners=True)
        branches = [self.aspp1(x), self.aspp2(x), self.aspp3(x), self.aspp4(x), pooled]
        return self.dropout(self.relu(self.bn1(self.conv1(torch.cat(branches, dim=1)))))


class _Decoder(nn.Module):
    """Low-level features to 48 channels, concatenated with the upsampled ASPP output, two 3x3 convolutions."""

    def __init__(self, low_channels: int, classes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(low_channels, 48, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(48)
        self.relu = nn.ReLU(inplace=True)
        self.output = nn.Sequential(
            *_conv_bn_relu(48 + 256, 256, 3), *_conv_bn_relu(256, 256, 3), nn.Dropout(0.1), nn.Conv2d(256, classes, 1)
        )
        _init_head(self)

    def forward(self, x: Tensor, low: Tensor) -> Tensor:
        low = self.relu(self.bn1(self.conv1(low)))
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=True)
        return self.output(torch.cat([low, x], dim=1))


class ReferenceDeepLabV3Plus(nn.Module):
    """DeepLabV3+ of the reference trainer (``models/deeplabv3_plus.py``, the ResNet branch).

    ``backbone``: torchvision ResNet-101 (7x7 stem), dilated to ``output_stride``; ``ASSP``: ASPP with
    rates 6/12/18 (output stride 16) or 12/24/36 (8), 256 channels, dropout 0.5; ``decoder``: layer1 features
    to 48 channels, two 3x3 convolutions, dropout 0.1, 1x1 classifier (stride 4); bilinear upsampling to the
    input size, ``align_corners=True`` everywhere. The reference always builds ResNet-101 (its ``backbone``
    argument only picks ResNet over Xception); other ``encoder_name`` values give light variants.

    Args:
        classes: number of output channels.
        encoder_name: torchvision ResNet depth (``resnet101`` in the reference).
        encoder_weights: must be None (weights come from a reference checkpoint).
        output_stride: 16 (the reference's default and configs) or 8.

    Shape:
        - input: (B, 3, H, W)
        - output: (B, classes, H, W) logits
    """

    def __init__(
        self,
        classes: int,
        encoder_name: str = "resnet101",
        encoder_weights: str | None = None,
        output_stride: int = 16,
    ) -> None:
        super().__init__()
        _no_encoder_weights(type(self).__name__, encoder_weights)
        _check_name(encoder_name, _RESNETS, type(self).__name__)
        self.backbone = _TorchvisionResNet(encoder_name, output_stride)
        self.ASSP = _ASPP(self.backbone.out_channels, output_stride)
        self.decoder = _Decoder(self.backbone.low_channels, classes)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        high, low = self.backbone(x)
        out = self.decoder(self.ASSP(high), low)
        return F.interpolate(out, size=size, mode="bilinear", align_corners=True)


# ------------------------------------------------------------------------------------------------------ FCN8
class ReferenceFCN8(nn.Module):
    """FCN-8s of the reference trainer (``models/fcn.py``): torchvision VGG features with the first
    convolution padded by 100 and ceil-mode pooling, cut after pool3 / pool4 / pool5; fc6 (7x7) and fc7 as
    convolutions with dropout, a 1x1 classifier; pool4 (x0.01) and pool3 (x1e-4) scored by 1x1 convolutions;
    frozen bilinear transposed convolutions x2, x2, x8 with crops at offsets 5, 9, 31.

    Differs from :class:`rankseg.models.FCN8s` in module names, dropout kind and initialisation of the score
    layers; this one loads the reference checkpoints.

    Args:
        classes: number of output channels.
        encoder_name: torchvision VGG (``vgg16`` in the reference, whatever its configs' backbone says).
        encoder_weights: must be None (weights come from a reference checkpoint).
        fc_channels: width of fc6/fc7 (4096; smaller only for light test models).

    Shape:
        - input: (B, 3, H, W)
        - output: (B, classes, H, W) logits
    """

    def __init__(
        self,
        classes: int,
        encoder_name: str = "vgg16",
        encoder_weights: str | None = None,
        fc_channels: int = 4096,
    ) -> None:
        super().__init__()
        _no_encoder_weights(type(self).__name__, encoder_weights)
        _check_name(encoder_name, _VGGS, type(self).__name__)
        layers = list(make_layers(cfgs[_VGGS[encoder_name]]))
        layers[0].padding = (100, 100)
        pools = [i for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)]
        for i in pools:
            layers[i].ceil_mode = True
        self.pool3 = nn.Sequential(*layers[: pools[2] + 1])
        self.pool4 = nn.Sequential(*layers[pools[2] + 1 : pools[3] + 1])
        self.pool5 = nn.Sequential(*layers[pools[3] + 1 :])
        self.adj_pool3 = nn.Conv2d(256, classes, 1)
        self.adj_pool4 = nn.Conv2d(512, classes, 1)
        self.output = nn.Sequential(
            nn.Conv2d(512, fc_channels, 7),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Conv2d(fc_channels, fc_channels, 1),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Conv2d(fc_channels, classes, 1),
        )
        self.up_output = _frozen_upsampler(classes, 2)
        self.up_pool4_out = _frozen_upsampler(classes, 2)
        self.up_final = _frozen_upsampler(classes, 8)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        pool3 = self.pool3(x)
        pool4 = self.pool4(pool3)
        score = self.up_output(self.output(self.pool5(pool4)))
        skip4 = self.adj_pool4(0.01 * pool4)[..., 5 : 5 + score.shape[-2], 5 : 5 + score.shape[-1]]
        score = self.up_pool4_out(skip4 + score)
        skip3 = self.adj_pool3(0.0001 * pool3)[..., 9 : 9 + score.shape[-2], 9 : 9 + score.shape[-1]]
        score = self.up_final(skip3 + score)
        return score[..., 31 : 31 + height, 31 : 31 + width].contiguous()


# ----------------------------------------------------------------------------------------- checkpoint import
def strip_module_prefix(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The state dict without the ``module.`` prefix that ``torch.nn.DataParallel`` puts on every key (keys
    without it are kept as they are)."""
    return {k.removeprefix("module."): v for k, v in state_dict.items()}


def _listing(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def load_reference_state_dict(model: nn.Module, state_dict: Mapping[str, Any]) -> None:
    """Load a reference trainer's weights into ``model`` with ``strict=True``.

    Args:
        model: one of the reference networks here, built with the checkpoint's class count.
        state_dict: the checkpoint's ``state_dict`` (keys with or without ``module.``), or the whole
            checkpoint dict (its ``state_dict`` entry is used).

    Raises:
        ReferenceStateDictError: naming the missing keys, the unexpected keys and every shape mismatch (a
            classifier mismatch usually means a different number of classes), before anything is loaded.
    """
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
        state_dict = state_dict["state_dict"]
    state = strip_module_prefix(state_dict)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} (checkpoint {tuple(state[k].shape)}, model {tuple(expected[k].shape)})"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): {_listing(mismatched)}")
    if problems:
        raise ReferenceStateDictError(f"state dict does not fit {type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def reference_arch_names() -> dict[str, str]:
    """Reference ``config.json`` ``arch.type`` -> our ``configs/model`` name (``{"PSPNet": "ref_pspnet", ...}``)."""
    return dict(REFERENCE_ARCHS)


def reference_model_config(arch: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Our model config name and overrides that rebuild a reference ``config.json`` ``arch`` node.

    ``{"type": "PSPNet", "args": {"backbone": "resnet50", ...}}`` gives ``("ref_pspnet", {"encoder_name":
    "resnet50"})``. DeepLab and FCN8 ignore ``backbone`` in the reference (ResNet-101 and VGG16 always); a
    DeepLab with an Xception backbone is not rebuilt here.

    Raises:
        ValueError: for an ``arch.type`` or backbone that no class here reproduces.
    """
    kind, args = arch.get("type"), dict(arch.get("args") or {})
    if kind == "PSPNet":
        name = str(args.get("backbone", "resnet152"))  # the reference's default backbone
        _check_name(name, _RESNETS, "reference PSPNet")
        return REFERENCE_ARCHS[kind], {"encoder_name": name}
    if kind == "DeepLab":
        backbone = str(args.get("backbone", "xception"))  # the reference's default backbone
        if "resnet" not in backbone:
            raise ValueError(f"reference DeepLab with backbone {backbone!r} (Xception) is not reproduced here")
        return REFERENCE_ARCHS[kind], {"encoder_name": "resnet101", "output_stride": int(args.get("output_stride", 16))}
    if kind == "FCN8":
        return REFERENCE_ARCHS[kind], {"encoder_name": "vgg16"}
    raise ValueError(f"reference arch.type {kind!r} has no counterpart here; known: {sorted(REFERENCE_ARCHS)}")
