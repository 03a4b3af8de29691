"""Semantic segmentation: DeepLabv3 with a MobileViT backbone (paper §4.2.2, Table 2).

Paper §4.2.2: MobileViT is the backbone of DeepLabv3 (Chen et al., 2017), fine-tuned on PASCAL
VOC 2012 (with extra annotations and COCO data) and evaluated by mean intersection over union
(mIOU) on its val split; Table 2 gives 1.9 M / 73.6, 2.9 M / 77.1 and 6.4 M / 79.1 for XXS, XS, S.
The details below are those of the official config, apple/ml-cvnets v0.1
``config/segmentation/deeplabv3_mobilevit_*.yaml`` with ``cvnets/models/segmentation/heads/
deeplabv3.py`` and ``cvnets/modules/aspp_block.py`` (Hugging Face's
``MobileViTForSemanticSegmentation`` is the same network):

    image [B, 3, H, W]
    backbone   MobileViT at output stride 16: layer5's down-sampling MV2 gets stride 1 (dilation),
               no conv 1x1 expansion, no classifier                   -> [B, C5, H/16, W/16]
    ASPP       five parallel branches, each conv -> BN -> ReLU with 256 channels:
                 1x1 conv | 3x3 conv dilation 6 | dilation 12 | dilation 18 |
                 image pooling (global average -> 1x1 conv -> copied back to every pixel)
               concat (5 x 256 = 1280) -> 1x1 projection to 256 (BN, ReLU) -> Dropout(0.1)
    classifier Dropout2d(0.1) -> 1x1 conv (with bias) to the classes  -> [B, K, H/16, W/16]
    loss       logits upsampled bilinearly to the mask size, cross-entropy ignoring label 255

With 21 classes (PASCAL VOC) the networks have 1,854,853 / 2,944,069 / 6,357,941 parameters.

Besides the network this module has the pieces a segmentation experiment needs: the loss
(:func:`segmentation_loss`), the metric (:class:`ConfusionMatrix`, :func:`mean_iou`), a PASCAL VOC
reader (:class:`VOCSegmentation`), the book's shapes as a segmentation data set
(:class:`ShapesSegmentation`), the official recipe (:func:`deeplabv3_recipe`) and a short training
loop (:func:`train_segmenter`), the key layout of Hugging Face's checkpoints
(:func:`load_hf_segmentation_state_dict`), and the figures of chapter 13 (at the end).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mobilevit_edu.models.checkpoints import CheckpointError, detect_layout, from_ours, key_map, to_ours
from mobilevit_edu.data import _parse_key, _resize, load_rgb
from mobilevit_edu.nn.layers import ConvBNAct
from mobilevit_edu.models.mobilevit import CONFIGS, MobileViT, init_weights
from mobilevit_edu.train import (
    EMA, EpochBatchSampler, History, TrainConfig, build_optimizer, lr_at, optimizer_step,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "IGNORE_INDEX",
    "ATROUS_RATES",
    "VOC_CLASSES",
    "ASPPPooling",
    "ASPP",
    "DeepLabV3",
    "create_deeplabv3",
    "upsample_logits",
    "segmentation_loss",
    "ConfusionMatrix",
    "mean_iou",
    "evaluate_segmentation",
    "voc_palette",
    "save_voc_mask",
    "VOCSegmentation",
    "ShapesSegmentation",
    "deeplabv3_recipe",
    "build_segmentation_optimizer",
    "train_segmenter",
    "hf_segmentation_config",
    "hf_segmentation_key_map",
    "load_hf_segmentation_state_dict",
    "to_hf_segmentation_state_dict",
    "load_backbone",
    "aspp_sampling_points",
    "aspp_valid_taps",
    "plot_aspp_grids",
    "plot_segmentation_predictions",
    "plot_segmentation_curves",
]

IGNORE_INDEX = 255  # PASCAL VOC marks object boundaries and "difficult" pixels with 255
ATROUS_RATES: tuple[int, int, int] = (6, 12, 18)  # the official ASPP rates at output stride 16

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)


# --- 1. the head ------------------------------------------------------------------------------


class ASPPPooling(nn.Module):
    """The image-pooling branch of ASPP: one global average per channel, a 1x1 conv -> BN -> ReLU,
    and that vector copied back to every position (bilinear upsampling of a 1 x 1 map is a copy).

    The BatchNorm sees a single value per channel and image, so training needs batches of at
    least two images (as PyTorch says: "Expected more than 1 value per channel when training")."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv_1x1 = ConvBNAct(in_channels, out_channels, 1, act=nn.ReLU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pooled = x.mean(dim=(-2, -1), keepdim=True)  # [B, C, h, w] -> [B, C, 1, 1]
        y = self.conv_1x1(pooled)  # [B, C, 1, 1] -> [B, 256, 1, 1]
        return y.expand(-1, -1, h, w)  # [B, 256, 1, 1] -> [B, 256, h, w]


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabv3): a 1x1 branch, one 3x3 branch per atrous rate,
    an image-pooling branch, all with ``out_channels`` (256) channels and ReLU; the branches are
    concatenated and projected back to ``out_channels`` by a 1x1 conv, then dropout.

    A 3x3 conv with dilation ``r`` samples the 9 positions ``(i + r a, j + r b)``, ``a, b`` in
    ``{-1, 0, 1}``: the same 9 weights see a window of ``2r + 1`` pixels, zero-padded at borders.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 256,
        rates: Sequence[int] = ATROUS_RATES,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if not rates or any(int(r) < 1 for r in rates):
            raise ValueError(f"atrous rates must be positive integers, got {tuple(rates)}")
        self.rates = tuple(int(r) for r in rates)
        self.in_channels, self.out_channels = in_channels, out_channels
        branches: list[nn.Module] = [ConvBNAct(in_channels, out_channels, 1, act=nn.ReLU)]
        branches += [ConvBNAct(in_channels, out_channels, 3, dilation=r, act=nn.ReLU)
                     for r in self.rates]
        branches.append(ASPPPooling(in_channels, out_channels))
        self.branches = nn.ModuleList(branches)
        self.project = ConvBNAct(len(branches) * out_channels, out_channels, 1, act=nn.ReLU)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # each branch: [B, C_in, h, w] -> [B, 256, h, w]; concatenated: [B, 5 * 256, h, w]
        pyramid = torch.cat([branch(x) for branch in self.branches], dim=1)
        return self.dropout(self.project(pyramid))  # [B, 1280, h, w] -> [B, 256, h, w]


class DeepLabV3(nn.Module):
    """DeepLabv3: a MobileViT backbone at output stride 16, ASPP, and a 1x1 classifier.

    ``forward(x)`` returns logits at the backbone's resolution, ``[B, K, ceil(H/16), ceil(W/16)]``
    (as Hugging Face's model does); the loss and the metric upsample them bilinearly to the mask
    size, and :meth:`predict` returns a label map at the input size.
    """

    def __init__(
        self,
        backbone: MobileViT,
        num_classes: int = 21,
        *,
        aspp_channels: int = 256,
        atrous_rates: Sequence[int] = ATROUS_RATES,
        aspp_dropout: float = 0.1,
        classifier_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if backbone.conv_1x1_exp is not None or backbone.classifier is not None:
            raise ValueError(
                "the DeepLabv3 backbone has no conv_1x1_exp and no classifier: build it with "
                "MobileViT(config, num_classes=0, output_stride=16, expand_output=False) or use "
                "create_deeplabv3(...)"
            )
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (background + a class), got {num_classes}")
        self.backbone = backbone
        self.num_classes = num_classes
        self.aspp = ASPP(backbone.num_features, aspp_channels, atrous_rates, aspp_dropout)
        self.dropout = nn.Dropout2d(classifier_dropout)
        self.classifier = nn.Conv2d(aspp_channels, num_classes, 1)  # with a bias, no norm
        init_weights(self.aspp)
        init_weights(self.classifier)

    @property
    def output_stride(self) -> int:
        return self.backbone.output_stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone.forward_features(x)[-1]  # layer5: [B, C5, H/16, W/16]
        y = self.aspp(features)  # [B, C5, h, w] -> [B, 256, h, w]
        return self.classifier(self.dropout(y))  # [B, 256, h, w] -> [B, K, h, w]

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Label maps ``[B, H, W]`` (int64) at the input size, in eval mode."""
        was_training = self.training
        self.eval()
        try:
            logits = upsample_logits(self(x), x.shape[-2:])  # [B, K, h, w] -> [B, K, H, W]
        finally:
            self.train(was_training)
        return logits.argmax(1)  # [B, K, H, W] -> [B, H, W]


def upsample_logits(logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear upsampling (``align_corners=False``, as the official code and Hugging Face) of
    ``[B, K, h, w]`` logits to ``size = (H, W)``; a no-op if they are already that size."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


def _size_of(name: str) -> str:
    size = name.removeprefix("deeplabv3_").removeprefix("mobilevit_")
    if size not in CONFIGS:
        raise ValueError(f"unknown MobileViT size {name!r}; use one of "
                         f"{', '.join(CONFIGS)} (or mobilevit_xxs, ...)")
    return size


def create_deeplabv3(
    name: str = "mobilevit_xxs",
    num_classes: int = 21,
    *,
    output_stride: int = 16,
    atrous_rates: Sequence[int] = ATROUS_RATES,
    aspp_channels: int = 256,
    aspp_dropout: float = 0.1,
    classifier_dropout: float = 0.1,
    **backbone_overrides: Any,
) -> DeepLabV3:
    """DeepLabv3 on MobileViT ``name`` ("xxs", "xs", "s" or "mobilevit_xxs", ...), the official
    segmentation network: output stride 16, ASPP with 256 channels and rates 6 / 12 / 18.

    ``backbone_overrides`` go to :func:`mobilevit_edu.create_model` (e.g. ``patch_sizes=...``).
    """
    from mobilevit_edu.models.registry import create_model

    backbone = create_model(f"mobilevit_{_size_of(name)}", num_classes=0,
                            output_stride=output_stride, expand_output=False, **backbone_overrides)
    return DeepLabV3(backbone, num_classes, aspp_channels=aspp_channels,
                     atrous_rates=atrous_rates, aspp_dropout=aspp_dropout,
                     classifier_dropout=classifier_dropout)


# --- 2. loss and metric -----------------------------------------------------------------------


def _check_target(target: torch.Tensor, num_classes: int, ignore_index: int, what: str) -> None:
    if target.is_floating_point() or target.dtype == torch.bool:
        raise TypeError(f"{what} must hold integer class indices, got {target.dtype}")
    valid = target[target != ignore_index]
    if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= num_classes):
        bad = torch.unique(valid[(valid < 0) | (valid >= num_classes)])[:8].tolist()
        raise ValueError(
            f"{what} holds values {bad} outside [0, {num_classes}) that are not the ignore index "
            f"{ignore_index}; check num_classes, or map such pixels to {ignore_index}"
        )


def segmentation_loss(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Mean cross-entropy over the pixels of ``target`` ``[B, H, W]`` that are not
    ``ignore_index``, the logits ``[B, K, h, w]`` upsampled bilinearly to ``H x W`` first.

    A batch whose pixels are all ignored gives a zero loss (still connected to the graph) rather
    than the NaN of an empty mean."""
    if logits.dim() != 4 or target.dim() != 3 or logits.shape[0] != target.shape[0]:
        raise ValueError(f"expected logits [B, K, h, w] and target [B, H, W], got "
                         f"{tuple(logits.shape)} and {tuple(target.shape)}")
    _check_target(target, logits.shape[1], ignore_index, "target")
    logits = upsample_logits(logits, target.shape[-2:])  # [B, K, h, w] -> [B, K, H, W]
    if not (target != ignore_index).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target.long(), ignore_index=ignore_index)


class ConfusionMatrix:
    """Pixel counts ``matrix[t, p]``: pixels of ground-truth class ``t`` predicted as ``p``,
    accumulated over a data set (pixels labelled ``ignore_index`` are left out).

    The IoU of class ``c`` is ``TP / (TP + FP + FN)`` = ``matrix[c, c] / (row c + column c -
    matrix[c, c])``. A class that appears neither in the ground truth nor in the predictions has
    ``0 / 0``: its IoU is NaN and the mean IoU leaves it out (a class that is predicted but absent
    from the ground truth has IoU 0 and counts). This is the usual definition (e.g. mmsegmentation);
    on PASCAL VOC val every class is present, so it is the plain mean over the 21 classes.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    @torch.no_grad()
    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> "ConfusionMatrix":
        """Add a batch: ``prediction`` is a label map of ``target``'s shape, or logits with one
        more (class) dimension ``[B, K, h, w]``, upsampled to the mask size and argmaxed."""
        if prediction.dim() == target.dim() + 1:
            if target.dim() == 2:
                prediction, target = prediction[None], target[None]
            prediction = upsample_logits(prediction.float(), target.shape[-2:]).argmax(1)
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)} and target "
                             f"{tuple(target.shape)} must have the same shape")
        _check_target(target, self.num_classes, self.ignore_index, "target")
        keep = target != self.ignore_index
        t, p = target[keep].long().cpu(), prediction[keep].long().cpu()
        if p.numel() and (int(p.min()) < 0 or int(p.max()) >= self.num_classes):
            raise ValueError(f"predictions must be in [0, {self.num_classes}), got "
                             f"[{int(p.min())}, {int(p.max())}]")
        k = self.num_classes
        self.matrix += torch.bincount(t * k + p, minlength=k * k).reshape(k, k)  # [K*K] -> [K, K]
        return self

    def iou(self) -> torch.Tensor:
        """Per-class IoU ``[K]`` (float64), NaN for classes absent from both sides."""
        m = self.matrix.double()
        tp = m.diag()
        union = m.sum(0) + m.sum(1) - tp
        return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))

    def mean_iou(self) -> float:
        """The mean of :meth:`iou` over the classes where it is defined (NaN if none is)."""
        iou = self.iou()
        defined = ~iou.isnan()
        return float(iou[defined].mean()) if defined.any() else float("nan")

    def pixel_accuracy(self) -> float:
        total = int(self.matrix.sum())
        return float(self.matrix.diag().sum()) / total if total else float("nan")

    def __repr__(self) -> str:
        return (f"ConfusionMatrix(num_classes={self.num_classes}, pixels={int(self.matrix.sum())}, "
                f"mIoU={self.mean_iou():.4f})")


def mean_iou(
    prediction: torch.Tensor, target: torch.Tensor, num_classes: int,
    ignore_index: int = IGNORE_INDEX,
) -> float:
    """mIoU of one set of label maps (see :class:`ConfusionMatrix` for the definition)."""
    return ConfusionMatrix(num_classes, ignore_index).update(prediction, target).mean_iou()


@torch.no_grad()
def evaluate_segmentation(
    model: nn.Module,
    data: Dataset | DataLoader | Iterable,
    *,
    num_classes: int | None = None,
    batch_size: int = 16,
    ignore_index: int = IGNORE_INDEX,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Score ``model`` (eval mode) on ``(image, mask)`` pairs: the logits are upsampled to the
    mask size (the standard protocol scores at the ground truth's resolution). Returns
    ``{"miou", "pixel_acc", "loss", "iou" (list, NaN for absent classes), "confusion"}``."""
    k = num_classes or model.num_classes
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    loader = (DataLoader(data, batch_size=batch_size, shuffle=False)
              if isinstance(data, Dataset) else data)
    cm = ConfusionMatrix(k, ignore_index)
    loss_sum, pixels = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        for images, masks in loader:
            images, masks = images.to(dev), masks.to(dev)
            logits = upsample_logits(model(images), masks.shape[-2:])  # [B, K, H, W]
            n = int((masks != ignore_index).sum())
            if n:
                loss_sum += float(segmentation_loss(logits, masks, ignore_index)) * n
                pixels += n
            cm.update(logits.argmax(1), masks)
    finally:
        model.train(was_training)
    return {"miou": cm.mean_iou(), "pixel_acc": cm.pixel_accuracy(),
            "loss": loss_sum / max(pixels, 1), "iou": cm.iou().tolist(), "confusion": cm}


# --- 3. data: PASCAL VOC and the book's shapes --------------------------------------------------


def voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map ``[n, 3]`` uint8: class ``c``'s colour is built from the bits of
    ``c`` (bit 0 -> red, 1 -> green, 2 -> blue, then the next bits one level dimmer). Index 0 is
    black (background), 255 is cream (224, 224, 192): the boundary / ignore label."""
    palette = np.zeros((n, 3), dtype=np.uint8)
    for c in range(n):
        r = g = b = 0
        label = c
        for j in range(8):
            r |= ((label >> 0) & 1) << (7 - j)
            g |= ((label >> 1) & 1) << (7 - j)
            b |= ((label >> 2) & 1) << (7 - j)
            label >>= 3
        palette[c] = (r, g, b)
    return palette


def save_voc_mask(mask: torch.Tensor | np.ndarray, path: str | Path) -> Path:
    """Write a label map ``[H, W]`` (values 0..254 and 255) as a VOC-style palette PNG (mode "P",
    pixel value = class index, colours from :func:`voc_palette`)."""
    from PIL import Image

    array = np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask)
    if array.ndim != 2 or array.min() < 0 or array.max() > 255:
        raise ValueError(f"a VOC mask is [H, W] with values in 0..255, got shape {array.shape}")
    image = Image.fromarray(array.astype(np.uint8), mode="P")
    image.putpalette(voc_palette().reshape(-1).tolist())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _resize_pair(image: torch.Tensor, mask: torch.Tensor, size: tuple[int, int]):
    """Image bilinearly (anti-aliased), mask by nearest neighbour (labels must not be blended)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image, mask
    image = _resize(image, size)  # [3, H, W] -> [3, h, w]
    mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].long()
    return image.clamp(0, 1), mask  # mask: [1, 1, H, W] -> [h, w]


class VOCSegmentation(Dataset):
    """PASCAL VOC 2012 segmentation, read from its own folder layout::

        VOC2012/JPEGImages/<id>.jpg
        VOC2012/SegmentationClass/<id>.png      palette PNG: value = class 0..20, 255 = boundary
        VOC2012/ImageSets/Segmentation/{train,val,trainval}.txt   one <id> per line

    ``root`` is the ``VOC2012`` folder or one above it (``VOCdevkit`` or its parent).
    ``ds[i]`` -> ``(image [3, H, W] float RGB in [0, 1], mask [H, W] int64)``, at the file's size
    unless ``image_size`` is given; ``ds[(h, w, i)]`` gives ``h x w`` (image bilinear, mask
    nearest). ``transform(image, mask) -> (image, mask)`` runs last.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        image_size: int | tuple[int, int] | None = None,
        transform: Callable[[torch.Tensor, torch.Tensor],
                            tuple[torch.Tensor, torch.Tensor]] | None = None,
        *,
        classes: Sequence[str] = VOC_CLASSES,
    ) -> None:
        self.root = self._find_root(Path(root))
        self.split = split
        self.classes = tuple(classes)
        self.num_classes = len(self.classes)
        self.image_size = ((image_size, image_size) if isinstance(image_size, int) else
                           (tuple(image_size) if image_size is not None else None))
        self.transform = transform
        sets = self.root / "ImageSets" / "Segmentation"
        split_file = sets / f"{split}.txt"
        if not split_file.is_file():
            have = sorted(p.stem for p in sets.glob("*.txt")) if sets.is_dir() else []
            raise FileNotFoundError(f"no split file {split_file}; splits found: {have or 'none'}")
        self.ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
        if not self.ids:
            raise ValueError(f"{split_file} lists no images")
        missing = [p for i in self.ids for p in (self._image_path(i), self._mask_path(i))
                   if not p.is_file()]
        if missing:
            more = f" ... and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise FileNotFoundError(f"{len(missing)} file(s) listed in {split_file.name} are "
                                    f"missing: {', '.join(map(str, missing[:5]))}{more}")

    @staticmethod
    def _find_root(root: Path) -> Path:
        for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
            if (candidate / "JPEGImages").is_dir() and (candidate / "SegmentationClass").is_dir():
                return candidate
        raise FileNotFoundError(
            f"no PASCAL VOC 2012 tree under {root}: expected JPEGImages/, SegmentationClass/ and "
            "ImageSets/Segmentation/ in it, in VOC2012/ or in VOCdevkit/VOC2012/"
        )

    def _image_path(self, image_id: str) -> Path:
        return self.root / "JPEGImages" / f"{image_id}.jpg"

    def _mask_path(self, image_id: str) -> Path:
        return self.root / "SegmentationClass" / f"{image_id}.png"

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return (f"VOCSegmentation(root={str(self.root)!r}, split={self.split!r}, "
                f"images={len(self)}, image_size={self.image_size})")

    def read_mask(self, index: int) -> torch.Tensor:
        """The label map ``[H, W]`` of image ``index`` at its own size."""
        from PIL import Image

        path = self._mask_path(self.ids[index])
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                raise ValueError(
                    f"{path} is a {im.mode} image; VOC masks are palette ('P') PNGs whose pixel "
                    "values are the class indices. Map colours to indices first (voc_palette() "
                    "gives the colour of each class) and save with save_voc_mask()"
                )
            mask = torch.from_numpy(np.array(im, dtype=np.int64))  # [H, W] class indices
        _check_target(mask, self.num_classes, IGNORE_INDEX, f"mask {path.name}")
        return mask

    def __getitem__(self, key: int | tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        size, i = _parse_key(key, self.image_size, len(self))
        image = load_rgb(self._image_path(self.ids[i]))  # [3, H, W]
        mask = self.read_mask(i)
        if tuple(mask.shape) != tuple(image.shape[-2:]):
            raise ValueError(f"{self.ids[i]}: mask {tuple(mask.shape)} and image "
                             f"{tuple(image.shape[-2:])} differ in size")
        if size is not None:
            image, mask = _resize_pair(image, mask, size)
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, mask


class ShapesSegmentation(Dataset):
    """The book's shapes (``ShapesDataset(task="shape")``) as a segmentation data set: every pixel
    labelled 0 (background) or 1 + the index of the shape that covers it (``SHAPES``: circle,
    square, triangle, ring, cross), distractors included. One large object and 0-2 small ones per
    image; the scene of sample ``i`` is the same at every resolution.

    ``ds[i]`` -> ``(image [3, H, W], mask [H, W] int64)`` at ``image_size``; ``ds[(h, w, i)]``
    renders at ``h x w``. ``cache=True`` keeps rendered samples in memory (masks as uint8)."""

    def __init__(self, size: int, image_size: int | tuple[int, int] = 128, seed: int = 0,
                 cache: bool = True) -> None:
        from mobilevit_edu.data import SHAPES, ShapesDataset

        self.shapes = ShapesDataset(size, task="shape", image_size=image_size, seed=seed)
        self.image_size = self.shapes.image_size
        self.classes: tuple[str, ...] = ("background", *SHAPES)
        self.num_classes = len(self.classes)
        self._cache: dict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor]] | None = (
            {} if cache else None)

    def __len__(self) -> int:
        return len(self.shapes)

    def __repr__(self) -> str:
        return (f"ShapesSegmentation(size={len(self)}, image_size={self.image_size}, "
                f"seed={self.shapes.seed}, classes={list(self.classes)})")

    def __getitem__(self, key: int | tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        size, i = _parse_key(key, self.image_size, len(self))
        h, w = size
        if self._cache is not None and (h, w, i) in self._cache:
            image, mask = self._cache[(h, w, i)]
            return image, mask.long()
        sample = self.shapes.render(i, h, w)
        if self._cache is not None:
            self._cache[(h, w, i)] = (sample.image, sample.mask.to(torch.uint8))
        return sample.image, sample.mask


# --- 4. training ----------------------------------------------------------------------------


def deeplabv3_recipe(**changes: Any) -> TrainConfig:
    """The official DeepLabv3 recipe (cvnets v0.1 ``deeplabv3_mobilevit_*.yaml``, paper App. D) as
    a :class:`~mobilevit_edu.train.TrainConfig`: 50 epochs, AdamW with weight decay 0.01, linear
    warm-up over 500 iterations from 0.00009 to 0.0009, cosine down to 1e-6, plain cross-entropy
    (no label smoothing), EMA 0.0005, 32 images per GPU on 4 GPUs (512 x 512 crops). The head's
    learning rate is 10 x (``head_lr_multiplier`` of :func:`train_segmenter`)."""
    base: dict[str, Any] = dict(
        model="deeplabv3_mobilevit_xxs", num_classes=21, epochs=50, lr=0.0009, min_lr=1e-6,
        warmup_lr=0.00009, warmup_iters=500, weight_decay=0.01, label_smoothing=0.0,
        ema_momentum=0.0005, batch_size=32, val_batch_size=16,
    )
    base.update(changes)
    return TrainConfig(**base)


def build_segmentation_optimizer(
    model: DeepLabV3, config: TrainConfig, head_lr_multiplier: float = 10.0
) -> torch.optim.Optimizer:
    """AdamW (:func:`~mobilevit_edu.train.build_optimizer`: weight decay on every parameter) with
    two groups, each with an ``lr_multiplier``: the backbone (1) and ASPP + classifier
    (``head_lr_multiplier``, the official recipe's 10). A loop sets
    ``group["lr"] = lr * group["lr_multiplier"]`` at every step."""
    optimizer = build_optimizer(model.backbone, config)
    optimizer.param_groups[0]["lr_multiplier"] = 1.0
    head = [p for n, p in model.named_parameters()
            if not n.startswith("backbone.") and p.requires_grad]
    optimizer.add_param_group({"params": head, "lr_multiplier": head_lr_multiplier,
                               "lr": config.warmup_lr * head_lr_multiplier})
    return optimizer


def train_segmenter(
    model: DeepLabV3,
    train_data: Dataset,
    val_data: Dataset | None,
    config: TrainConfig,
    *,
    head_lr_multiplier: float = 10.0,
    ignore_index: int = IGNORE_INDEX,
) -> History:
    """Train ``model`` on ``(image, mask)`` pairs with ``config``'s schedule (:func:`lr_at`) and
    return the per-epoch :class:`~mobilevit_edu.train.History` (``train_loss``, ``val_loss``,
    ``val_miou``, ``val_pixel_acc``, and the same with ``ema_`` when ``config.ema_momentum``).

    AdamW with two groups (:func:`build_segmentation_optimizer`): the backbone at the scheduled
    rate, ASPP + classifier at ``head_lr_multiplier`` times it, as the official ``lr_multiplier``.
    Batches from an :class:`~mobilevit_edu.train.EpochBatchSampler` of ``config.batch_size``; a
    last batch of a single image is skipped (ASPP's pooling branch has a BatchNorm over one value
    per image, which needs two). Runs in fp32 on ``config.device`` (default: CUDA if available);
    a tqdm bar when ``config.progress``.
    """
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(config.seed)
    sampler = EpochBatchSampler(len(train_data), config.batch_size, seed=config.seed)
    loader = DataLoader(train_data, batch_sampler=sampler, num_workers=config.workers)
    model.to(device).train()
    optimizer = build_segmentation_optimizer(model, config, head_lr_multiplier)
    ema = EMA(model, config.ema_momentum) if config.ema_momentum else None
    show_bar = config.progress if config.progress is not None else sys.stderr.isatty()
    history, iteration = History(), 0
    for epoch in range(config.epochs):
        sampler.set_epoch(epoch)
        model.train()
        loss_sum, batches_seen, t0 = 0.0, 0, time.perf_counter()
        batches: Iterable = loader
        if show_bar:
            from tqdm.auto import tqdm

            batches = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False)
        for images, masks in batches:
            if images.shape[0] < 2:
                continue
            images, masks = images.to(device), masks.to(device)
            lr = lr_at(config, iteration, epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_multiplier"]
            loss = segmentation_loss(model(images), masks, ignore_index)
            optimizer_step(loss, model, optimizer, config, ema)
            iteration += 1
            batches_seen += 1
            loss_sum += loss.item()
            if show_bar:
                batches.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}")
        row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": loss_sum / max(batches_seen, 1),
                               "seconds": time.perf_counter() - t0}
        if val_data is not None:
            for prefix, net in [("", model)] + ([("ema_", ema.module)] if ema is not None else []):
                m = evaluate_segmentation(net, val_data, num_classes=model.num_classes,
                                          batch_size=config.val_batch_size,
                                          ignore_index=ignore_index, device=device)
                row.update({f"{prefix}val_loss": m["loss"], f"{prefix}val_miou": m["miou"],
                            f"{prefix}val_pixel_acc": m["pixel_acc"]})
        row.update(lr=lr_at(config, max(iteration - 1, 0), epoch), iteration=iteration)
        history.append(row)
        if config.verbose:
            print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in row.items()), flush=True)
    history.ema = ema.module if ema is not None else None
    return history


# --- 5. checkpoints: Hugging Face's MobileViTForSemanticSegmentation ---------------------------

HF_SIZES: dict[str, dict[str, Any]] = {  # transformers' convert_mlcvnets_to_pytorch.py
    "xxs": dict(hidden_sizes=[64, 80, 96], neck_hidden_sizes=[16, 16, 24, 48, 64, 80, 320],
                expand_ratio=2.0, hidden_dropout_prob=0.05),
    "xs": dict(hidden_sizes=[96, 120, 144], neck_hidden_sizes=[16, 32, 48, 64, 80, 96, 384]),
    "s": dict(hidden_sizes=[144, 192, 240], neck_hidden_sizes=[16, 32, 64, 96, 128, 160, 640]),
}

# our head key -> Hugging Face's (the backbone's keys come from mobilevit_edu.models.checkpoints)
_HF_HEAD_RULES: list[tuple[str, str]] = [
    (r"^aspp\.branches\.", "segmentation_head.aspp.convs."),
    (r"^aspp\.project\.", "segmentation_head.aspp.project."),
    (r"^classifier\.", "segmentation_head.classifier.convolution."),
    (r"\.conv\.", ".convolution."),
    (r"\.bn\.", ".normalization."),
]


def hf_segmentation_config(name: str = "xxs", num_classes: int = 21, **changes: Any):
    """The ``transformers.MobileViTConfig`` of ``apple/deeplabv3-mobilevit-{xx-small, ...}``:
    the size's widths, ``output_stride=16``, 512 x 512 images, ``num_labels=num_classes``."""
    try:
        from transformers import MobileViTConfig as HFConfig
    except ImportError as err:  # pragma: no cover - transformers is in the [book] extra
        raise ImportError("hf_segmentation_config needs transformers: "
                          "pip install transformers") from err
    kwargs = dict(HF_SIZES[_size_of(name)], output_stride=16, image_size=512,
                  num_labels=num_classes)
    kwargs.update(changes)
    return HFConfig(**kwargs)


def _hf_head_key(key: str) -> str:
    for pattern, repl in _HF_HEAD_RULES:
        key = re.sub(pattern, repl, key)
    return key


def hf_segmentation_key_map(model: DeepLabV3) -> dict[str, list[str]]:
    """For every tensor of ``model.state_dict()``: our key -> its key(s) in Hugging Face's
    ``MobileViTForSemanticSegmentation`` (three for a stacked qkv, as in
    :func:`mobilevit_edu.models.checkpoints.key_map`)."""
    out = {f"backbone.{k}": v for k, v in key_map(model.backbone, "hf").items()}
    for key in model.state_dict():
        if not key.startswith("backbone."):
            out[key] = [_hf_head_key(key)]
    return out


def load_hf_segmentation_state_dict(
    model: DeepLabV3, state_dict: Mapping[str, torch.Tensor]
) -> DeepLabV3:
    """Load a Hugging Face ``MobileViTForSemanticSegmentation`` state dict into ``model``
    (strictly: each missing, unexpected or mis-shaped tensor is listed in a ``CheckpointError``)."""
    sd = dict(state_dict)
    backbone_sd = {k: v for k, v in sd.items() if k.startswith("mobilevit.")}
    head_sd = {k: v for k, v in sd.items() if not k.startswith("mobilevit.")}
    problems: list[str] = []
    converted: dict[str, torch.Tensor] = {}
    try:
        converted.update({f"backbone.{k}": v
                          for k, v in to_ours(backbone_sd, model.backbone, "hf").items()})
    except CheckpointError as err:
        problems.append(f"backbone: {err}")
    ours = model.state_dict()
    used, missing, bad = set(), [], []
    for key in ours:
        if key.startswith("backbone."):
            continue
        theirs = _hf_head_key(key)
        if theirs not in head_sd:
            missing.append(theirs)
            continue
        used.add(theirs)
        if tuple(head_sd[theirs].shape) != tuple(ours[key].shape):
            bad.append(f"{theirs}: checkpoint {tuple(head_sd[theirs].shape)} vs model "
                       f"{tuple(ours[key].shape)}")
            continue
        converted[key] = head_sd[theirs]
    unexpected = sorted(k for k in head_sd if k not in used)
    if missing:
        problems.append(f"head: missing keys ({len(missing)}): {', '.join(missing[:8])}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:8])}")
    if bad:
        problems.append(f"head: shape mismatches ({len(bad)}): {'; '.join(bad[:8])}")
    if problems:
        raise CheckpointError("checkpoint does not fit DeepLabV3: " + " | ".join(problems)
                              + ". Fix: check the size (xxs/xs/s), num_classes and the atrous "
                              "rates; a classification checkpoint goes in with load_backbone()")
    model.load_state_dict(converted, strict=True)
    return model


def to_hf_segmentation_state_dict(model: DeepLabV3) -> dict[str, torch.Tensor]:
    """Export ``model``'s weights with Hugging Face's key names (to load into transformers)."""
    out = from_ours(model.backbone, "hf")
    for key, tensor in model.state_dict().items():
        if not key.startswith("backbone."):
            out[_hf_head_key(key)] = tensor.detach().clone()
    return out


def load_backbone(
    model: DeepLabV3, state_dict: Mapping[str, torch.Tensor], layout: str | None = None
) -> DeepLabV3:
    """Initialise ``model.backbone`` from a *classification* checkpoint of the same size (any
    layout of :mod:`mobilevit_edu.models.checkpoints`: ours, hf, timm, cvnets), as the paper fine-tunes
    ImageNet weights. Exactly the tensors a segmentation backbone does not have (conv 1x1
    expansion and classifier) are dropped; anything else that does not fit raises."""
    layout = layout or detect_layout(state_dict)
    # the names of conv_1x1_exp and the classifier in that layout, read off a classifier network
    full = MobileViT(model.backbone.config, num_classes=1)
    dropped = {name for key, names in key_map(full, layout).items()
               if key.startswith(("conv_1x1_exp.", "classifier.")) for name in names}
    kept = {k: v for k, v in state_dict.items() if k not in dropped}
    model.backbone.load_state_dict(to_ours(kept, model.backbone, layout), strict=True)
    return model


# --- figures (chapter 13) ----------------------------------------------------------------------


def aspp_sampling_points(
    centre: tuple[int, int], rate: int, size: int
) -> list[tuple[int, int, bool]]:
    """The 9 positions ``(row, col, inside)`` a 3x3 conv with dilation ``rate`` reads for the
    output pixel ``centre`` of a ``size x size`` map; ``inside`` is False where it reads padding."""
    i, j = centre
    return [(i + rate * a, j + rate * b, 0 <= i + rate * a < size and 0 <= j + rate * b < size)
            for a in (-1, 0, 1) for b in (-1, 0, 1)]


def aspp_valid_taps(size: int, rate: int) -> float:
    """The share of a dilated 3x3 conv's taps that land inside a ``size x size`` map, averaged
    over all output pixels (1.0: every weight sees features; 1/9: only the centre one does)."""
    inside_1d = np.array([sum(0 <= i + rate * a < size for a in (-1, 0, 1)) for i in range(size)])
    return float((inside_1d.mean() ** 2) / 9)  # rows and columns are independent


def plot_aspp_grids(
    size: int = 32,
    rates: Sequence[int] = ATROUS_RATES,
    centres: Sequence[tuple[int, int]] = ((16, 16), (4, 25)),
    *,
    name: str = "13_aspp_grids",
) -> "Figure":
    """Where the three dilated 3x3 branches of ASPP look on a ``size x size`` feature map (the
    map of a 512-px image at output stride 16), one panel per rate, for each output pixel in
    ``centres``: filled markers read features, hollow ones fall in the zero padding."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from mobilevit_edu.plots.save import save_figure

    colours = ["#D55E00", "#0072B2", "#009E73", "#CC79A7"]
    # one scale for all panels: the map plus every tap of every panel
    pts = [p for r in rates for c in centres for p in aspp_sampling_points(c, r, size)]
    lo = min(0, *(min(p[0], p[1]) for p in pts)) - 1.5
    hi_r = max(size, *(p[0] + 1 for p in pts)) + 0.5
    hi_c = max(size, *(p[1] + 1 for p in pts)) + 0.5
    fig, axes = plt.subplots(1, len(rates), figsize=(3.6 * len(rates), 4.0))
    for ax, rate in zip(np.atleast_1d(axes), rates):
        ax.add_patch(Rectangle((-0.5, -0.5), size, size, facecolor="#f2f2f2", edgecolor="black",
                               linewidth=1.0, zorder=0))
        for k in range(0, size + 1, 4):
            ax.plot([k - 0.5, k - 0.5], [-0.5, size - 0.5], color="white", lw=0.6, zorder=1)
            ax.plot([-0.5, size - 0.5], [k - 0.5, k - 0.5], color="white", lw=0.6, zorder=1)
        n_in = []
        for colour, centre in zip(colours, centres):
            pts = aspp_sampling_points(centre, rate, size)
            n_in.append(sum(p[2] for p in pts))
            ax.add_patch(Rectangle((centre[1] - rate - 0.5, centre[0] - rate - 0.5), 2 * rate + 1,
                                   2 * rate + 1, fill=False, edgecolor=colour, linestyle=":",
                                   linewidth=1.0, zorder=2))
            for r, c, inside in pts:
                ax.plot(c, r, "o", ms=6.5, zorder=3, markeredgecolor=colour,
                        markerfacecolor=colour if inside else "white", markeredgewidth=1.4)
            ax.plot(centre[1], centre[0], "x", color="black", ms=5, zorder=4)
        ax.set_xlim(lo, hi_c)
        ax.set_ylim(hi_r, lo)
        ax.set_aspect("equal")
        ax.axis("off")
        inside = ", ".join(f"{n}/9" for n in n_in)
        ax.set_title(f"rate {rate}: window {2 * rate + 1} x {2 * rate + 1}\n"
                     f"taps inside the map: {inside}", fontsize=9.5)
    handles = [plt.Line2D([], [], marker="o", ls="", color=colour,
                          label=f"output pixel (row {r}, col {c})")
               for colour, (r, c) in zip(colours, centres)]
    handles.append(plt.Line2D([], [], marker="o", ls="", markerfacecolor="white",
                              markeredgecolor="0.3", label="tap in the zero padding"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8.5,
               frameon=False)
    fig.suptitle(f"where a dilated 3x3 conv reads on a {size} x {size} feature map "
                 f"(grey; grid lines every 4 px)", fontsize=10.5, y=0.99)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    save_figure(fig, name)
    return fig


def _colourise(mask: torch.Tensor, palette: np.ndarray) -> np.ndarray:
    return palette[np.asarray(mask.cpu(), dtype=np.int64).clip(0, 255)]  # [H, W] -> [H, W, 3]


def plot_segmentation_predictions(
    images: torch.Tensor,
    targets: torch.Tensor,
    predictions: Mapping[str, torch.Tensor],
    class_names: Sequence[str],
    *,
    name: str = "13_predictions",
) -> "Figure":
    """One column per image: the image, its ground truth, then each model's predicted label map
    (``predictions`` maps a row title to ``[N, H, W]``), all coloured with the VOC palette; a
    legend names the classes."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from mobilevit_edu.plots.save import save_figure

    if images.dim() != 4 or targets.dim() != 3 or images.shape[0] != targets.shape[0]:
        raise ValueError(f"expected images [N, 3, H, W] and targets [N, H, W], got "
                         f"{tuple(images.shape)} and {tuple(targets.shape)}")
    palette = voc_palette()
    rows = [("image", None), ("ground truth", targets)] + list(predictions.items())
    n = images.shape[0]
    fig, axes = plt.subplots(len(rows), n, figsize=(1.7 * n + 1.0, 1.75 * len(rows)),
                             squeeze=False)
    for r, (title, maps) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            if maps is None:
                ax.imshow(images[c].permute(1, 2, 0).clamp(0, 1).cpu().numpy())  # [3,H,W]->[H,W,3]
            else:
                ax.imshow(_colourise(maps[c], palette), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(title, fontsize=9)
    handles = [Patch(facecolor=palette[k] / 255.0, edgecolor="0.5", label=label)
               for k, label in enumerate(class_names)]
    fig.legend(handles=handles, loc="lower center", ncol=len(class_names), fontsize=8.5,
               frameon=False, bbox_to_anchor=(0.5, -0.01))
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    save_figure(fig, name)
    return fig


def plot_segmentation_curves(
    history: Sequence[Mapping[str, float]],
    *,
    baselines: Mapping[str, float] | None = None,
    name: str = "13_training_curves",
) -> "Figure":
    """Training (and validation) loss, left, and validation mIoU, right, per epoch; each entry of
    ``baselines`` (label -> mIoU as a fraction, e.g. the untrained model's) as a dashed line."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from mobilevit_edu.plots.save import save_figure

    ep = [row["epoch"] for row in history]
    fig, (ax_l, ax_m) = plt.subplots(1, 2, figsize=(9.0, 3.2))
    ax_l.plot(ep, [row["train_loss"] for row in history], marker="o", label="train")
    if all("val_loss" in row for row in history):
        ax_l.plot(ep, [row["val_loss"] for row in history], marker="o", ls=":", label="val")
    ax_l.set(xlabel="epoch", ylabel="cross-entropy per pixel", title="loss")
    ax_l.legend(fontsize=8)
    ax_m.plot(ep, [100 * row["val_miou"] for row in history], marker="o", color="#D55E00",
              label="trained")
    for (label, value), colour in zip((baselines or {}).items(), ("0.35", "#0072B2", "#009E73")):
        ax_m.axhline(100 * value, color=colour, ls="--", lw=1, label=label)
    ax_m.set(xlabel="epoch", ylabel="validation mIoU (%)", title="mean IoU", ylim=(0, 100))
    ax_m.legend(fontsize=8)
    for ax in (ax_l, ax_m):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    save_figure(fig, name)
    return fig
