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
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from mobilevit_edu.nn.block import MobileViTBlock
from mobilevit_edu.nn.layers import ConvBNAct
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

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The outputs of layer1..layer5 (output strides 2, 4, 8, 16, 32 unless dilated)."""
        check_image_batch(x, self.in_channels)
        x = self.stem(x)  # [B, 3, H, W] -> [B, 16, H/2, W/2]
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv_1x1_exp is not None:
            x = self.conv_1x1_exp(x)  # [B, C5, h, w] -> [B, C_exp, h, w]
        x = x.mean(dim=(-2, -1))  # global average pool: [B, C, h, w] -> [B, C]
        if self.classifier is None:
            return x
        return self.classifier(self.dropout(x))  # [B, C] -> [B, num_classes]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x)[-1])


def architecture_table(model: MobileViT, image_size: int | tuple[int, int] = 256) -> list[dict]:
    """One row per stage, read off the model by running it once: name, output size, channels,
    number of blocks, transformer width d, depth L, parameters, output stride."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
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


# --- figures (chapter 06) ----------------------------------------------------------------------
_STAGE_KINDS = ("conv", "MV2", "MobileViT")


def _stage_kind(row: dict) -> str:
    """'conv' (stem, 1x1 expansion), 'MV2' (MV2 blocks only) or 'MobileViT' (MV2 + block)."""
    if row.get("d") is not None:
        return "MobileViT"
    return "MV2" if row.get("mv2_blocks", 0) else "conv"


def plot_architecture(tables: dict[str, list[dict]], *, name: str = "06_architecture"):
    """The networks as rows of boxes, one box per stage (in the spirit of the paper's Fig. 1b).

    ``tables`` maps a row label (e.g. ``"MobileViT-XS"``) to the rows of ``architecture_table``.
    Box height grows with the stage's output size (log scale), the colour says what the stage is
    made of, and the box names its channels (and d, L for a MobileViT stage). The stage names and
    output sizes of the first table head the columns. Saved as ``figures/<name>.png``.
    """
    import math

    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    from mobilevit_edu.plots.save import save_figure

    if not tables:
        raise ValueError("nothing to plot: pass {label: architecture_table(model)}")
    n_cols = {len(rows) for rows in tables.values()}
    if len(n_cols) != 1:
        raise ValueError(f"all tables need the same stages, got lengths {sorted(n_cols)}")
    colours = dict(zip(_STAGE_KINDS, ("#9a9a9a", "#0072B2", "#D55E00")))
    first = next(iter(tables.values()))
    sides = [max(int(v) for v in r["output"].split(" x ")) for r in first]
    top = math.log2(max(sides))
    fig, ax = plt.subplots(figsize=(1.25 * len(first) + 1.6, 1.45 * len(tables) + 1.0))
    for i, (label, rows) in enumerate(tables.items()):
        y = -1.45 * i
        ax.text(-0.6, y, label, ha="right", va="center", fontsize=10, fontweight="bold")
        for j, row in enumerate(rows):
            side = max(int(v) for v in row["output"].split(" x "))
            h = 0.35 + 0.75 * math.log2(side) / top  # 8 px -> 0.8, 128 px -> 1.1
            kind = _stage_kind(row)
            ax.add_patch(Rectangle((j - 0.42, y - h / 2), 0.84, h, facecolor=colours[kind],
                                   edgecolor="black", linewidth=0.6, alpha=0.9))
            text = f"C={row['channels']}"
            if kind == "MobileViT":
                text += f"\nd={row['d']}\nL={row['L']}"
            ax.text(j, y, text, ha="center", va="center", fontsize=8, color="white")
            if j:
                ax.annotate("", (j - 0.43, y), (j - 0.57, y),
                            arrowprops={"arrowstyle": "->", "lw": 0.8})
    for j, row in enumerate(first):
        ax.text(j, 0.85, f"{row['stage']}\n{row['output']}", ha="center", va="bottom", fontsize=8.5)
    labels = {"conv": "conv", "MV2": "MV2", "MobileViT": "MV2 + MobileViT block"}
    ax.legend(handles=[Patch(color=colours[k], label=labels[k]) for k in _STAGE_KINDS],
              loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8.5, frameon=False)
    ax.set_xlim(-2.3, len(first) - 0.4)
    ax.set_ylim(-1.45 * (len(tables) - 1) - 0.8, 1.5)
    ax.axis("off")
    fig.tight_layout()
    save_figure(fig, name)
    return fig


def plot_param_distribution(
    breakdowns: dict[str, dict[str, dict[str, int]]], *, name: str = "06_param_distribution"
):
    """Where the parameters live: one panel per model, one stacked bar per stage.

    ``breakdowns`` maps a model label to ``{stage: {part: parameter count}}`` (stages in network
    order; parts such as ``"MV2"``, ``"block convs"``, ``"transformer"``, ``"classifier"``). Parts
    with the same name share a colour across panels; each bar is labelled with its share of the
    model's total. Saved as ``figures/<name>.png``; returns the figure.
    """
    import matplotlib.pyplot as plt

    from mobilevit_edu.plots.save import save_figure

    if not breakdowns:
        raise ValueError("nothing to plot")
    parts: list[str] = []
    for stages in breakdowns.values():
        for counts in stages.values():
            parts += [p for p in counts if p not in parts]
    colours = dict(zip(parts, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4))
    n = len(breakdowns)
    fig, axes = plt.subplots(1, n, figsize=(4.0 * n, 3.8), squeeze=False)
    for ax, (label, stages) in zip(axes[0], breakdowns.items()):
        total = sum(sum(c.values()) for c in stages.values())
        names = list(stages)
        for x, stage in enumerate(names):
            bottom = 0
            for part in parts:
                n = stages[stage].get(part, 0)
                if n:
                    ax.bar(x, n / 1e6, bottom=bottom / 1e6, color=colours[part], width=0.75)
                bottom += n
            share = 100 * bottom / total
            ax.text(x, bottom / 1e6, f"{share:.0f}%" if share >= 0.5 else "<1%", ha="center",
                    va="bottom", fontsize=8)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_title(f"{label}: {total:,}", fontsize=10.5)
        ax.set_ylim(0, 1.12 * max(sum(c.values()) for c in stages.values()) / 1e6)
        ax.grid(False, axis="x")
    axes[0][0].set_ylabel("parameters (millions)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[p]) for p in parts]
    fig.legend(handles, parts, loc="upper center", ncol=len(parts), bbox_to_anchor=(0.5, 1.06),
               fontsize=9, frameon=False)
    fig.tight_layout()
    save_figure(fig, name)
    return fig


def plot_preprocessing(
    photo: torch.Tensor,
    bgr: torch.Tensor,
    *,
    crop_box: tuple[float, float, float, float] | None = None,
    name: str = "06_official_preprocess",
):
    """The photo, the tensor ``official_preprocess`` makes from it shown as if it were RGB (red and
    blue swapped: what a BGR-trained network 'expects'), and that tensor flipped back to RGB.

    ``photo``: ``[3, H, W]`` RGB in [0, 1]; ``bgr``: ``[3, h, w]`` BGR in [0, 1]; ``crop_box``:
    ``(left, top, width, height)`` in photo pixels, drawn dashed on the photo if given.
    Saved as ``figures/<name>.png``; returns the figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from mobilevit_edu.plots.save import save_figure

    for label, t in (("photo", photo), ("bgr", bgr)):
        if t.dim() != 3 or t.shape[0] != 3:
            raise ValueError(f"{label} must be [3, H, W], got {tuple(t.shape)}")
    panels = [
        (photo, f"the photo, RGB {photo.shape[1]} x {photo.shape[2]}"),
        (bgr, "official_preprocess output\nshown as RGB (channels B, G, R)"),
        (bgr.flip(0), f"the same tensor flipped to RGB\n({bgr.shape[1]} x {bgr.shape[2]} crop)"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(7.2, 2.9))
    for ax, (t, title) in zip(axes, panels):
        ax.imshow(t.detach().permute(1, 2, 0).clamp(0, 1).cpu().numpy())  # [3, H, W] -> [H, W, 3]
        ax.set_title(title, fontsize=8.5)
        ax.axis("off")
    if crop_box is not None:
        left, top, width, height = crop_box
        axes[0].add_patch(Rectangle((left - 0.5, top - 0.5), width, height, fill=False,
                                    edgecolor="white", linestyle="--", linewidth=1.5))
    fig.tight_layout()
    save_figure(fig, name)
    return fig
