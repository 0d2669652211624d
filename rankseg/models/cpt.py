"""CPT: the category-prototype decode head of RankSEG-RMA's ADE20K Swin-L row, on a timm Swin encoder.

Written from the description of ``CategoryPrototypeTransformer`` in github.com/ZixunWang/RankSEG-RMA @ 4ccb5d5
(``exp/models/methods/cpt.py``, ``exp/models/backbones/backbone.py``, ``exp/models/segmentor.py``,
``exp/configs/models/cpt_swinlarge.yaml``); neither smp nor timm has it. The network:

1. encoder: timm ``swin_large_patch4_window12_384.ms_in22k`` with ``features_only`` (four stages, strides 4-32,
   channels 192-1536), built for ``img_size`` = the training crop as theirs, window 12;
2. lateral 1x1 convolutions bring every stage to ``channels`` (256);
3. top-down, from stage 4 to stage 1, a :class:`CategoryBlock` updates the coarser map ``high`` with the finer
   lateral ``low``: ``high`` is summarised into one feature per class (a learned soft mask per class, softmax over
   the positions), optionally blended with a memory of class prototypes (a buffer updated by momentum in training
   mode), and every position of ``low`` attends to those class features (cross attention, then an MLP; both
   residual, pre-LayerNorm); a 3x3 convolution of each result is kept;
4. the kept maps (and stage 4's lateral) are resized to stride 4, concatenated and fused by a 3x3 conv + BN +
   GELU; a global-pool branch of the raw stage-4 features (1x1 conv + BN + GELU to ``pool_channels``) is
   appended; a 1x1 classifier gives the logits, upsampled bilinearly to the input size.

The prototype memory (``memory``, one unit vector per class per block) follows their rule with a constant
momentum ``m`` (0.2: their ``momentum_cfg`` default ``start`` with ``use_poly: False``; neither their segmentor
nor their configs change it, and nothing calls ``set_cur_iter``). In training mode, with ``f`` the batch's class
features (B x classes x channels): ``memory <- (1 - m) * memory + m * normalize(mean_batch(f))`` (the mean
averaged over processes under DDP); in both modes the block uses ``(1 - m) * f + m * memory``, with the memory as
it was before this forward pass.

Differences from the authors' code:

* plain torch modules instead of mmcv's ``ConvModule``/``DepthwiseSeparableConvModule`` (same layers: conv
  without bias + norm + GELU; depthwise 3x3 then pointwise 1x1 with biases, no norm or activation for the
  queries) and BatchNorm instead of SyncBN (``sync_bn=true`` in ``configs/train.yaml`` converts it under
  torchrun); the global-pool branch's BatchNorm needs more than one image per process in training;
* logits are upsampled to the input size (theirs: to the fixed crop size, which is the same for their
  crop-sized training and sliding windows);
* their loss is ``0.5 x CE`` of these logits (``main_weight`` of ``exp/configs/losses/ce.yaml``); the per-block
  mask logits that their ``MaskLoss`` (mask and dice weights 5 and 1) would supervise are never returned (their
  forward's list of masks stays empty), so their runs add no auxiliary term either; our ``train.py`` uses CE with
  weight 1 (AdamW's steps do not depend on a constant loss scale, up to its epsilon);
* their segmentor also builds an auxiliary head and a SegHead that CPT never calls, and their head declares a
  dropout (0.1) that its forward never applies; neither exists here;
* the memory's optional initialisation from a ``.npy`` file and the polynomial momentum schedule (both off in
  their runs) are not implemented;
* the encoder accepts any input whose sides are multiples of the patch size 4 (``strict_img_size=False``: the
  attention masks are built per input size), not only the crop size.

Their quirk of computing the attention as ``softmax(max - scores)``, which equals ``softmax(-scores)``, is kept.
Decoder initialisation as theirs: convolutions Kaiming-uniform (fan in, ReLU gain), linear layers Xavier-uniform,
biases 0, norms weight 1 and bias 0; the Swin encoder keeps timm's stochastic depth default (0.1).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from rankseg.models.weights import check_pretrained_weights

__all__ = ["CPTSegmenter", "CategoryBlock", "CategoryFeatures", "CategoryPrototypeHead"]


def _conv_bn_gelu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """Convolution (no bias: the norm has one) + BatchNorm + GELU, 'same' padding."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.GELU(),
    )


class _ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class CategoryFeatures(nn.Module):
    """One feature per class from a feature map, turned into attention keys and values.

    A soft mask per class (two 1x1 convolutions, softmax over the positions) pools a grouped-1x1-projected map into
    class features ``f`` (B x classes x channels). With ``use_memory``, ``f`` is blended with the buffer ``memory``
    (classes x channels, unit rows at initialisation), which training-mode calls update (module docstring).

    Shape:
        - input: (B, channels, H, W)
        - output: (B, classes, 2 * channels): keys then values
    """

    def __init__(self, channels: int, classes: int, use_memory: bool = True, bias: bool = True, groups: int = 4):
        super().__init__()
        self.mask = nn.Sequential(
            nn.Conv2d(channels, channels, 1, groups=groups, bias=False), nn.Conv2d(channels, classes, 1, bias=False)
        )
        self.align = nn.Conv2d(channels, channels, 1, groups=groups, bias=False)
        self.to_kv = nn.Linear(channels, 2 * channels, bias=bias)
        self.use_memory = use_memory
        if use_memory:
            memory = torch.randn(classes, channels) / (classes * channels) ** 0.5
            self.register_buffer("memory", F.normalize(memory, dim=1))

    @torch.no_grad()
    def update_memory(self, features: Tensor, momentum: float) -> None:
        """``memory <- (1 - momentum) * memory + momentum * normalize(batch mean of features)``, the batch mean
        averaged over the processes of a distributed run."""
        mean = features.detach().float().mean(dim=0)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(mean.div_(dist.get_world_size()))
        self.memory.mul_(1.0 - momentum).add_(F.normalize(mean, dim=1), alpha=momentum)

    def forward(self, x: Tensor, momentum: float) -> Tensor:
        weights = self.mask(x).flatten(2).softmax(dim=-1)  # B x classes x HW
        features = weights @ self.align(x).flatten(2).transpose(1, 2)  # B x classes x channels
        if self.use_memory:
            mixed = (1.0 - momentum) * features + momentum * self.memory.to(features.dtype)
            if self.training:
                self.update_memory(features, momentum)  # after the blend: it used the memory before this step
            features = mixed
        return self.to_kv(features)


class CategoryBlock(nn.Module):
    """Cross attention of a finer map's positions (queries) to the class features of a coarser map (keys and
    values), then a convolutional MLP; both residual on the finer map, pre-LayerNorm.

    Shape:
        - low: (B, channels, H, W); high: (B, channels, h, w), any h, w
        - output: (B, channels, H, W)
    """

    def __init__(
        self,
        channels: int,
        classes: int,
        num_heads: int = 4,
        mlp_ratio: int = 4,
        use_memory: bool = True,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        drop: float = 0.0,
        groups: int = 4,
    ):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels ({channels}) must be a multiple of num_heads ({num_heads})")
        self.num_heads = num_heads
        self.scale = (channels // num_heads) ** -0.5
        self.norm_low = _ChannelLayerNorm(channels, eps=1e-6)
        self.norm_high = _ChannelLayerNorm(channels, eps=1e-6)
        self.query = nn.Sequential(  # depthwise separable 3x3
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=qkv_bias),
            nn.Conv2d(channels, channels, 1, bias=qkv_bias),
        )
        self.categories = CategoryFeatures(channels, classes, use_memory, qkv_bias, groups)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Conv2d(channels, channels, 1)
        self.proj_drop = nn.Dropout(drop)
        self.norm_mlp = _ChannelLayerNorm(channels, eps=1e-6)
        hidden = channels * mlp_ratio
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden),
            nn.GELU(),
            nn.Dropout(drop),
            nn.Conv2d(hidden, channels, 1),
            nn.Dropout(drop),
        )

    def _heads(self, x: Tensor) -> Tensor:
        """(B, channels, N) -> (B, heads, N, channels / heads), channel ``h * d + j`` to head h."""
        return x.unflatten(1, (self.num_heads, -1)).transpose(-2, -1)

    def forward(self, low: Tensor, high: Tensor, momentum: float) -> Tensor:
        batch, channels, height, width = low.shape
        q = self._heads(self.query(self.norm_low(low)).flatten(2))
        k, v = (self._heads(t) for t in self.categories(self.norm_high(high), momentum).transpose(1, 2).chunk(2, 1))
        scores = (q @ k.transpose(-2, -1)) * self.scale  # B x heads x HW x classes
        # the authors' "stable" form: softmax(max - s) = softmax(-s), kept as in their code
        attn = self.attn_drop((scores.amax(dim=-1, keepdim=True) - scores).softmax(dim=-1))
        out = (attn @ v).transpose(-2, -1).reshape(batch, channels, height, width)
        out = low + self.proj_drop(self.proj(out))
        return out + self.mlp(self.norm_mlp(out))


class CategoryPrototypeHead(nn.Module):
    """The decode head: laterals, top-down :class:`CategoryBlock` s, FPN convolutions, fusion, image pooling and
    classifier (module docstring).

    Shape:
        - input: four maps (B, in_channels[i], H / 2^(i+2), W / 2^(i+2)), NCHW
        - output: (B, classes, H / 4, W / 4) logits at the finest map's size
    """

    def __init__(
        self,
        in_channels: tuple[int, ...] | list[int],
        classes: int,
        channels: int = 256,
        num_heads: int = 4,
        mlp_ratio: int = 4,
        pool_channels: int = 48,
        use_memory: bool = True,
        momentum: float = 0.2,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        drop: float = 0.0,
        groups: int = 4,
    ):
        super().__init__()
        self.momentum = momentum
        self.laterals = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.blocks = nn.ModuleList(
            CategoryBlock(channels, classes, num_heads, mlp_ratio, use_memory, qkv_bias, attn_drop, drop, groups)
            for _ in in_channels[:-1]
        )
        self.fpn_convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in in_channels[:-1])
        self.fusion = _conv_bn_gelu(len(in_channels) * channels, channels, 3)
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), _conv_bn_gelu(in_channels[-1], pool_channels, 1))
        self.classifier = nn.Conv2d(channels + pool_channels, classes, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
            elif isinstance(m, nn.BatchNorm2d | nn.LayerNorm):
                nn.init.ones_(m.weight)
            if isinstance(m, nn.Conv2d | nn.Linear | nn.BatchNorm2d | nn.LayerNorm) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, features: list[Tensor]) -> Tensor:
        laterals = [conv(f) for conv, f in zip(self.laterals, features, strict=True)]
        high, outs = laterals[-1], [laterals[-1]]
        for i in reversed(range(len(self.blocks))):
            high = self.blocks[i](laterals[i], high, self.momentum)
            outs.append(self.fpn_convs[i](high))
        size = outs[-1].shape[-2:]
        outs = [F.interpolate(o, size=size, mode="bilinear", align_corners=False) for o in outs]
        fused = self.fusion(torch.cat(outs, dim=1))
        pooled = self.image_pool(features[-1]).expand(-1, -1, *size)  # bilinear resize of a 1x1 map
        return self.classifier(torch.cat([fused, pooled], dim=1))


class CPTSegmenter(nn.Module):
    """A timm Swin encoder with the :class:`CategoryPrototypeHead` (RankSEG-RMA's CPT; module docstring).

    Args:
        classes: number of output channels.
        encoder_name: timm model, with or without smp's ``tu-`` prefix
            (``tu-swin_large_patch4_window12_384.ms_in22k`` in RMA's ADE20K row); any timm model whose
            ``features_only`` form gives four NHWC or NCHW maps works.
        encoder_weights: ``None`` (random init) or a tag such as ``imagenet``: the timm weights of
            ``encoder_name`` then must be in the local Hugging Face cache (:func:`check_pretrained_weights`;
            nothing is downloaded).
        img_size: the size a Swin encoder is built for (the training crop, as theirs); other sizes work too.
            ``None`` for encoders without that argument (CNNs).
        channels: decoder width (256).
        num_heads: attention heads of each block (4).
        mlp_ratio: MLP expansion of each block (4).
        pool_channels: width of the image-pool branch (48).
        use_memory: keep the class-prototype memory (theirs: on).
        momentum: the memory's momentum (0.2, constant).
        groups: groups of the grouped 1x1 convolutions that make class features (4).
        encoder_kwargs: extra ``timm.create_model`` arguments (small test encoders: ``embed_dim``, ``depths``...).
        pretrained_cfg_overlay: timm's override of the weights source; :func:`rankseg.engine.build.build_model`
            passes the checked local file here.
        in_channels: input channels (3).

    Shape:
        - input: (B, in_channels, H, W), H and W multiples of Swin's patch size (4)
        - output: (B, classes, H, W) logits
    """

    def __init__(
        self,
        classes: int,
        encoder_name: str = "tu-swin_large_patch4_window12_384.ms_in22k",
        encoder_weights: str | bool | None = None,
        img_size: int | tuple[int, int] | None = 512,
        channels: int = 256,
        num_heads: int = 4,
        mlp_ratio: int = 4,
        pool_channels: int = 48,
        use_memory: bool = True,
        momentum: float = 0.2,
        groups: int = 4,
        encoder_kwargs: dict[str, Any] | None = None,
        pretrained_cfg_overlay: dict[str, Any] | None = None,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        import timm

        timm_name = encoder_name.removeprefix("tu-")
        if encoder_weights and pretrained_cfg_overlay is None:
            weights = check_pretrained_weights(f"tu-{timm_name}", str(encoder_weights))
            pretrained_cfg_overlay = {"file": str(weights)}
        kwargs: dict[str, Any] = dict(encoder_kwargs or {})
        if img_size is not None:  # Swin: attention masks per input size, so that any size runs
            kwargs = {"img_size": img_size, "strict_img_size": False, **kwargs}
        if pretrained_cfg_overlay is not None:
            kwargs["pretrained_cfg_overlay"] = pretrained_cfg_overlay
        self.encoder = timm.create_model(
            timm_name, pretrained=bool(encoder_weights), features_only=True, in_chans=in_channels, **kwargs
        )
        stage_channels = self.encoder.feature_info.channels()
        # timm's Swin returns NHWC maps (``output_fmt``, a str enum), CNNs NCHW
        self.channels_last = getattr(self.encoder, "output_fmt", "NCHW") == "NHWC"
        self.decoder = CategoryPrototypeHead(
            stage_channels[-4:],
            classes,
            channels=channels,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            pool_channels=pool_channels,
            use_memory=use_memory,
            momentum=momentum,
            groups=groups,
        )

    def forward(self, x: Tensor) -> Tensor:
        features = self.encoder(x)[-4:]
        if self.channels_last:
            features = [f.permute(0, 3, 1, 2) for f in features]
        logits = self.decoder(features)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
