"""FCN-8s (Long et al. 2015) on a torchvision VGG backbone, as in the reference code.

The paper's tables and the reference configs say "FCN8 (resnet101)", but the reference ``models/fcn.py``
builds torchvision VGG16 and silently drops the ``backbone`` argument; VGG16 is therefore the default here,
and the backbone is a config value (``model.encoder_name``, any torchvision VGG).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.vgg import cfgs, make_layers

from rankseg.models.weights import check_pretrained_weights, torchvision_weights_path

_VGG_CFGS = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}


def _bilinear_kernel(channels: int, size: int) -> Tensor:
    """Weights that make a ConvTranspose2d do per-channel bilinear upsampling."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    grid = torch.arange(size, dtype=torch.float32)
    filt = 1 - (grid - center).abs() / factor
    kernel = filt[:, None] * filt[None, :]
    weight = torch.zeros(channels, channels, size, size)
    weight[range(channels), range(channels)] = kernel
    return weight


def _frozen_upsampler(channels: int, scale: int) -> nn.ConvTranspose2d:
    up = nn.ConvTranspose2d(channels, channels, kernel_size=2 * scale, stride=scale, bias=False)
    up.weight.data.copy_(_bilinear_kernel(channels, 2 * scale))
    up.weight.requires_grad_(False)
    return up


class FCN8s(nn.Module):
    """FCN-8s: VGG features (conv1 padded by 100, ceil-mode pools), fc6/fc7 as convolutions, skip scores from
    pool4 (scaled by 0.01) and pool3 (scaled by 1e-4), frozen bilinear upsampling x2, x2, x8.

    Args:
        classes: number of output channels.
        encoder_name: torchvision VGG name (``vgg16`` in the reference).
        encoder_weights: ``"imagenet"`` to load torchvision's checkpoint from the local torch-hub cache
            (never downloaded; see :func:`check_pretrained_weights`) or ``None``.
        fc_channels: width of fc6/fc7 (4096 in VGG); smaller values make light test models, but then fc6/fc7
            are not initialised from the VGG classifier.
        in_channels: input channels (3).

    Shape:
        - input: (B, in_channels, H, W)
        - output: (B, classes, H, W) logits
    """

    def __init__(
        self,
        classes: int,
        encoder_name: str = "vgg16",
        encoder_weights: str | None = None,
        fc_channels: int = 4096,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        check_pretrained_weights(encoder_name, encoder_weights, source="torchvision")
        # Only VGG's features are built: torchvision's full VGG allocates a 102M-parameter classifier.
        arch, batch_norm = _VGG_CFGS[encoder_name.removesuffix("_bn")], encoder_name.endswith("_bn")
        features = make_layers(cfgs[arch], batch_norm=batch_norm)
        state = None
        if encoder_weights is not None:
            state = torch.load(torchvision_weights_path(encoder_name), map_location="cpu", weights_only=True)
            features.load_state_dict({k[9:]: v for k, v in state.items() if k.startswith("features.")})
        layers = list(features)
        if in_channels != 3:
            layers[0] = nn.Conv2d(in_channels, layers[0].out_channels, 3)
        layers[0].padding = (100, 100)  # so that any input size survives fc6's 7x7 valid convolution
        pools = [i for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)]
        for i in pools:
            layers[i].ceil_mode = True
        fc6 = nn.Conv2d(512, fc_channels, 7)
        fc7 = nn.Conv2d(fc_channels, fc_channels, 1)
        if state is not None and fc_channels == 4096:
            fc6.weight.data.copy_(state["classifier.0.weight"].view(fc6.weight.shape))
            fc6.bias.data.copy_(state["classifier.0.bias"])
            fc7.weight.data.copy_(state["classifier.3.weight"].view(fc7.weight.shape))
            fc7.bias.data.copy_(state["classifier.3.bias"])
        self.encoder = nn.ModuleDict(
            {
                "to_pool3": nn.Sequential(*layers[: pools[2] + 1]),
                "to_pool4": nn.Sequential(*layers[pools[2] + 1 : pools[3] + 1]),
                "to_pool5": nn.Sequential(*layers[pools[3] + 1 : pools[4] + 1]),
                "fc": nn.Sequential(
                    fc6, nn.ReLU(inplace=True), nn.Dropout2d(), fc7, nn.ReLU(inplace=True), nn.Dropout2d()
                ),
            }
        )
        self.score_fr = nn.Conv2d(fc_channels, classes, 1)
        self.score_pool4 = nn.Conv2d(512, classes, 1)
        self.score_pool3 = nn.Conv2d(256, classes, 1)
        for conv in (self.score_fr, self.score_pool4, self.score_pool3):
            # zero-initialised scores, as in the original FCN: training starts from the bilinear upsampling
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.up2_pool5 = _frozen_upsampler(classes, 2)
        self.up2_pool4 = _frozen_upsampler(classes, 2)
        self.up8 = _frozen_upsampler(classes, 8)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        pool3 = self.encoder["to_pool3"](x)
        pool4 = self.encoder["to_pool4"](pool3)
        pool5 = self.encoder["to_pool5"](pool4)
        score = self.up2_pool5(self.score_fr(self.encoder["fc"](pool5)))
        # Fixed crop offsets (5, 9, 31) align the padded-by-100 feature maps with the input, as in FCN-8s.
        skip4 = self.score_pool4(pool4 * 0.01)[..., 5 : 5 + score.shape[-2], 5 : 5 + score.shape[-1]]
        score = self.up2_pool4(score + skip4)
        skip3 = self.score_pool3(pool3 * 1e-4)[..., 9 : 9 + score.shape[-2], 9 : 9 + score.shape[-1]]
        score = self.up8(score + skip3)
        return score[..., 31 : 31 + height, 31 : 31 + width].contiguous()
