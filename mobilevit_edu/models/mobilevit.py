"""The full MobileViT network: XXS, XS and S.

Paper: §3.1 and Fig. 1b (the architecture), §4.1 (model sizes 1.3 M / 2.3 M / 5.6 M parameters),
App. A / Table 4 (the per-stage configuration). The configurations below are those of the official
code (apple/ml-cvnets ``config/mobilevit.py``), which are the architecture facts the book checks:

    stage    op                         out size @256   OS   XXS           XS            S
    stem     conv 3x3, stride 2         128 x 128        2   16            16            16
    layer1   1 x MV2                    128 x 128        2   16            32            32
    layer2   3 x MV2 (first stride 2)    64 x 64         4   24            48            64
    layer3   MV2 s2 + MobileViT block    32 x 32         8   48  d=64  L=2 64  d=96  L=2 96  d=144 L=2
    layer4   MV2 s2 + MobileViT block    16 x 16        16   64  d=80  L=4 80  d=120 L=4 128 d=192 L=4
    layer5   MV2 s2 + MobileViT block     8 x 8         32   80  d=96  L=3 96  d=144 L=3 160 d=240 L=3
    exp      conv 1x1 (min(4 C5, 960))    8 x 8         32   320           384           640
    head     global pool -> dropout 0.1 -> linear

MV2 expansion is 4 for XS and S and 2 for XXS; every MobileViT block uses 4 heads, FFN width 2d and
2 x 2 patches; transformer dropout is 0.05 for XXS and 0.1 for XS and S.

``output_stride`` 16 or 8 replaces the stride of the last one or two down-sampling MV2 blocks by
dilation, as the official segmentation backbones do (the MobileViT blocks stay undilated).

The feature contract every model of the library follows (timm-style; detection, segmentation and
receptive fields use it): ``forward_intermediates(x)`` returns one ``[B, C, H, W]`` map per stage,
in order of depth, described by ``feature_info`` (``{"name", "channels", "stride"}`` each);
``forward_features(x)`` the last map before pooling; ``forward_head`` turns it into logits; and
``forward(x) == forward_head(forward_features(x))``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from mobilevit_edu.nn.block import MobileViTBlock
from mobilevit_edu.nn.layers import ConvBNAct, to_pair
from mobilevit_edu.nn.mv2 import InvertedResidual

__all__ = [
    "MobileViTConfig",
    "CONFIGS",
    "MobileViT",
    "init_weights",
    "check_image_batch",
    "architecture_table",
]

MIN_INPUT_SIZE = 32


@dataclass(frozen=True)
class MobileViTConfig:
    """Everything that distinguishes XXS, XS and S (and the ablations the book runs)."""

    name: str
    channels: tuple[int, int, int, int, int, int]  # stem, layer1, ..., layer5
    transformer_dims: tuple[int, int, int]  # d of the blocks in layer3, layer4, layer5
    depths: tuple[int, int, int] = (2, 4, 3)  # L, transformer layers per block
    expansion: float = 4.0  # MV2 expansion factor t
    num_heads: int = 4
    ffn_ratio: float = 2.0  # FFN width = ffn_ratio * d (App. A: 2d, not 4d)
    patch_sizes: tuple[int, int, int] = (2, 2, 2)  # patch h = w at OS 8, 16, 32 (Table 6)
    dropout: float = 0.1  # after attention and after the FFN
    attn_drop: float = 0.0
    ffn_drop: float = 0.0
    classifier_dropout: float = 0.1
    last_channels: int | None = None  # conv 1x1 width; None -> min(4 * C5, 960)
    fusion: bool = True  # False: the Fig. 14 ablation, no concat + fusion conv

    @property
    def exp_channels(self) -> int:
        return self.last_channels or min(4 * self.channels[-1], 960)


CONFIGS: dict[str, MobileViTConfig] = {
    "xxs": MobileViTConfig(
        "mobilevit_xxs", (16, 16, 24, 48, 64, 80), (64, 80, 96), expansion=2.0, dropout=0.05
    ),
    "xs": MobileViTConfig("mobilevit_xs", (16, 32, 48, 64, 80, 96), (96, 120, 144)),
    "s": MobileViTConfig("mobilevit_s", (16, 32, 64, 96, 128, 160), (144, 192, 240)),
}


def init_weights(model: nn.Module) -> None:
    """The official initialisation: Kaiming-normal (fan-out) convs, truncated-normal (std 0.02)
    linears, norms at weight 1 / bias 0, every bias at 0.

    ``trunc_normal_`` cuts at +-2 in absolute units, as the official code calls it, so with
    std 0.02 it is a normal distribution in practice."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def check_image_batch(x: torch.Tensor, in_channels: int, min_size: int = MIN_INPUT_SIZE) -> None:
    """Raise a ValueError that names the problem and the fix for a bad image batch."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        hint = " (add a batch dimension with x.unsqueeze(0))" if x.dim() == 3 else ""
        raise ValueError(f"expected images [B, C, H, W], got shape {tuple(x.shape)}{hint}")
    if x.shape[1] != in_channels:
        raise ValueError(
            f"expected {in_channels} input channels, got {x.shape[1]} (shape {tuple(x.shape)}); "
            "images are [B, C, H, W] with channels first; repeat a grey channel 3 times or "
            "build the model with in_channels=..."
        )
    h, w = x.shape[-2:]
    if min(h, w) < min_size:
        raise ValueError(
            f"input {h}x{w} is too small: each side must be >= {min_size} px "
            f"(MobileViT down-samples by 32); resize the images (the paper uses 256 x 256)"
        )
    if not x.is_floating_point():
        raise TypeError(f"expected a floating-point image tensor, got {x.dtype}; use x.float() / 255")


class MobileViT(nn.Module):
    """MobileViT for classification, and a backbone with features at output strides 2..32."""

    def __init__(
        self,
        config: MobileViTConfig,
        num_classes: int = 1000,
        *,
        in_channels: int = 3,
        output_stride: int = 32,
        expand_output: bool = True,
        fused_attention: bool = True,
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        self.config, self.num_classes = config, num_classes
        self.in_channels, self.output_stride = in_channels, output_stride
        c, t = config.channels, config.expansion

        self.stem = ConvBNAct(in_channels, c[0], 3, stride=2)
        self.layer1 = nn.Sequential(InvertedResidual(c[0], c[1], 1, t))
        self.layer2 = nn.Sequential(
            InvertedResidual(c[1], c[2], 2, t),
            InvertedResidual(c[2], c[2], 1, t),
            InvertedResidual(c[2], c[2], 1, t),
        )
        # Trading stride for dilation: OS 16 dilates layer5, OS 8 dilates layer4 and layer5.
        dilate = {3: False, 4: output_stride == 8, 5: output_stride in (8, 16)}
        dilation, stride_so_far = 1, 4
        strides = [2, 4]  # output strides of layer1, layer2, then one per MobileViT stage
        for i, stage in enumerate((3, 4, 5)):
            if dilate[stage]:
                dilation *= 2
            # a dilated stage keeps its resolution; its MV2 dilates by the *previous* rate
            mv2 = InvertedResidual(
                c[stage - 1], c[stage], 1 if dilation > 1 else 2, t,
                dilation=dilation // 2 if dilation > 1 else 1,
            )
            stride_so_far *= 1 if dilation > 1 else 2
            strides.append(stride_so_far)
            block = MobileViTBlock(
                c[stage], config.transformer_dims[i], config.depths[i],
                num_heads=config.num_heads, ffn_ratio=config.ffn_ratio,
                patch_size=config.patch_sizes[i], dropout=config.dropout,
                attn_drop=config.attn_drop, ffn_drop=config.ffn_drop, fusion=config.fusion,
                fused_attention=fused_attention,
            )
            self.add_module(f"layer{stage}", nn.Sequential(mv2, block))
        self.feature_info = [
            {"name": f"layer{i + 1}", "channels": c[i + 1], "stride": s}
            for i, s in enumerate(strides)
        ]
        self.conv_1x1_exp = ConvBNAct(c[5], config.exp_channels, 1) if expand_output else None
        self.num_features = config.exp_channels if expand_output else c[5]
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else None
        init_weights(self)

    @property
    def stages(self) -> list[nn.Module]:
        return [self.layer1, self.layer2, self.layer3, self.layer4, self.layer5]

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The outputs of layer1..layer5, one ``[B, C_i, H/s_i, W/s_i]`` map per entry of
        ``feature_info`` (output strides 2, 4, 8, 16, 32 unless dilated)."""
        check_image_batch(x, self.in_channels)
        x = self.stem(x)  # [B, 3, H, W] -> [B, 16, H/2, W/2]
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last map before pooling: layer5's output ``[B, C5, H/32, W/32]`` (at OS 32)."""
        check_image_batch(x, self.in_channels)
        x = self.stem(x)  # [B, 3, H, W] -> [B, 16, H/2, W/2]
        for stage in self.stages:
            x = stage(x)
        return x

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """``forward_features``' map -> logits (1x1 expansion, global pool, dropout, linear);
        without a classifier (``num_classes=0``) the pooled ``[B, num_features]`` vector."""
        if self.conv_1x1_exp is not None:
            x = self.conv_1x1_exp(x)  # [B, C5, h, w] -> [B, C_exp, h, w]
        x = x.mean(dim=(-2, -1))  # global average pool: [B, C, h, w] -> [B, C]
        if self.classifier is None:
            return x
        return self.classifier(self.dropout(x))  # [B, C] -> [B, num_classes]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def architecture_table(model: MobileViT, image_size: int | tuple[int, int] = 256) -> list[dict]:
    """One row per stage, read off the model by running it once: name, output size, channels,
    number of blocks, transformer width d, depth L, parameters, output stride."""
    h, w = to_pair(image_size, "image_size")
    rows: list[dict] = []
    hooks = []
    named = [("stem", model.stem)] + [(f"layer{i}", s) for i, s in enumerate(model.stages, 1)]
    if model.conv_1x1_exp is not None:
        named.append(("conv_1x1_exp", model.conv_1x1_exp))

    def make_hook(name: str, module: nn.Module):
        def hook(_m, _inp, out):
            blocks = [b for b in module.modules() if isinstance(b, MobileViTBlock)]
            n_mv2 = sum(isinstance(b, InvertedResidual) for b in module.modules())
            rows.append(
                {
                    "stage": name,
                    "output": f"{out.shape[-2]} x {out.shape[-1]}",
                    "channels": out.shape[1],
                    "mv2_blocks": n_mv2,
                    "d": blocks[0].transformer_dim if blocks else None,
                    "L": blocks[0].depth if blocks else None,
                    "stride": strides[name],
                    "params": sum(p.numel() for p in module.parameters()),
                }
            )
        return hook

    # the network's output stride per stage (a property of its strides, not of H / h, which
    # is fractional when H is not a multiple of 32)
    strides = {"stem": 2, **{i["name"]: i["stride"] for i in model.feature_info}}
    strides["conv_1x1_exp"] = model.feature_info[-1]["stride"]
    for name, module in named:
        hooks.append(module.register_forward_hook(make_hook(name, module)))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, model.in_channels, h, w))
    finally:
        for hk in hooks:
            hk.remove()
        model.train(was_training)
    return rows


def config_with(config: MobileViTConfig, **changes) -> MobileViTConfig:
    """A copy of ``config`` with some fields changed; unknown fields raise a TypeError."""
    fields = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(changes) - fields)
    if unknown:
        raise TypeError(f"unknown MobileViTConfig field(s) {unknown}; known: {sorted(fields)}")
    return dataclasses.replace(config, **changes)
