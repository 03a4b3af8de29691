"""Readers' own data: CIFAR-10 from its python batches, any ``root/<class>/<image>`` folder
(ImageNet, Imagenette, your photos), and the one image-file loader they share.

Paper: §4.1 trains and evaluates on ImageNet-1k, an image folder; the book's chapters 10-11 let
a reader point the same training at CIFAR-10 or an ImageNet subset. Both data sets take the keys
of :func:`mobilevit_edu.data.shapes.parse_key` (``i`` or the sampler's ``(h, w, i)``) and apply
their ``transform`` at the asked size (:func:`mobilevit_edu.data.transforms.apply_at_size`).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mobilevit_edu.data.shapes import parse_key
from mobilevit_edu.data.transforms import Size, apply_at_size, fit_to_size, resize_image
from mobilevit_edu.nn.layers import to_pair

__all__ = ["CIFAR10", "CIFAR10_URL", "ImageFolder", "IMAGE_EXTENSIONS", "load_rgb"]


CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


class CIFAR10(Dataset):
    """CIFAR-10 from its python pickle batches (``data_batch_1`` .. ``data_batch_5``,
    ``test_batch``, ``batches.meta``), as shipped in ``cifar-10-python.tar.gz``.

    ``root`` is the folder holding the batches or its parent holding ``cifar-10-batches-py``.
    Images stay ``uint8`` in memory and are returned as float ``[3, 32, 32]`` in [0, 1] (or at
    ``image_size`` / ``(h, w)``, resized bilinearly).
    """

    TRAIN_FILES = tuple(f"data_batch_{k}" for k in range(1, 6))
    TEST_FILES = ("test_batch",)
    META_FILE = "batches.meta"

    def __init__(
        self,
        root: str | Path,
        train: bool = True,
        transform: Callable[..., torch.Tensor] | None = None,
        image_size: int | Sequence[int] = 32,
    ) -> None:
        root = Path(root)
        if (root / "cifar-10-batches-py").is_dir():
            root = root / "cifar-10-batches-py"
        self.root = root
        self.train = train
        self.transform = transform
        self.image_size: Size = to_pair(image_size, "image_size")
        data, labels = [], []
        for name in self.TRAIN_FILES if train else self.TEST_FILES:
            batch = self._load(name)
            for key in (b"data", b"labels"):
                if key not in batch:
                    raise KeyError(f"{root / name} has no key {key!r}; is it a CIFAR-10 python batch?")
            arr = np.asarray(batch[b"data"], dtype=np.uint8)
            if arr.ndim != 2 or arr.shape[1] != 3 * 32 * 32:
                raise ValueError(f"{root / name}: data has shape {arr.shape}, expected [N, 3072]")
            data.append(arr.reshape(-1, 3, 32, 32))  # [N, 3072] -> [N, 3, 32, 32] (R, G, B planes)
            labels.extend(int(v) for v in batch[b"labels"])
        self.data = torch.from_numpy(np.concatenate(data))
        self.targets: list[int] = labels
        meta = self._load(self.META_FILE)
        self.classes: list[str] = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[b"label_names"]]
        self.num_classes = len(self.classes)
        if len(self.targets) != len(self.data):
            raise ValueError(f"{root}: {len(self.data)} images but {len(self.targets)} labels")

    def _load(self, name: str) -> dict:
        path = self.root / name
        if not path.is_file():
            raise FileNotFoundError(
                f"CIFAR-10 file not found: {path}. Download the python version "
                f"(cifar-10-python.tar.gz) from {CIFAR10_URL}, extract it, and pass the folder "
                "'cifar-10-batches-py' (or its parent) as root."
            )
        with open(path, "rb") as f:
            return pickle.load(f, encoding="bytes")

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, key: int | tuple[int, int, int]) -> tuple[torch.Tensor, int]:
        size, i = parse_key(key, self.image_size, len(self))
        image = self.data[i].float() / 255.0  # uint8 [3, 32, 32] -> float in [0, 1]
        if self.transform is not None:
            image = apply_at_size(self.transform, image, size)
        else:
            image = resize_image(image, size)
        return image, self.targets[i]


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def load_rgb(path: str | Path) -> torch.Tensor:
    """An image file (any format Pillow reads) as RGB floats ``[3, H, W]`` in [0, 1], unresized.
    Shared by every loader of real data (ImageFolder, COCO, PASCAL VOC)."""
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255.0  # [H, W, 3] -> [3, H, W]


class ImageFolder(Dataset):
    """Images in ``root/<class>/<file>`` (ImageNet, Imagenette, your own photos).

    Classes are the sorted sub-folder names; files are sorted within each class. Images are read
    with PIL and converted to RGB float ``[3, H, W]`` in [0, 1]. Without a ``transform`` an image is
    scaled to cover ``image_size`` (or the ``(h, w)`` of the key) and centre-cropped to it; with
    one, the transform is applied at that size (see :func:`transform_at_size`).
    """

    def __init__(
        self,
        root: str | Path,
        image_size: int | Sequence[int] = 256,
        transform: Callable[..., torch.Tensor] | None = None,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root} (expected root/<class>/<image files>)")
        self.image_size: Size = to_pair(image_size, "image_size")
        self.transform = transform
        exts = tuple(e.lower() for e in extensions)
        self.classes: list[str] = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not self.classes:
            raise FileNotFoundError(f"no class sub-folders in {self.root} (expected root/<class>/<image files>)")
        self.class_to_idx = {c: k for k, c in enumerate(self.classes)}
        self.samples: list[tuple[Path, int]] = []
        for c in self.classes:
            files = sorted(p for p in (self.root / c).rglob("*") if p.is_file() and p.suffix.lower() in exts)
            self.samples.extend((p, self.class_to_idx[c]) for p in files)
        if not self.samples:
            raise FileNotFoundError(f"no image files ({', '.join(exts)}) in the class folders of {self.root}")
        self.targets: list[int] = [t for _, t in self.samples]
        self.num_classes = len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> torch.Tensor:
        """The image file as a float tensor ``[3, H, W]`` in [0, 1] (no resizing)."""
        return load_rgb(self.samples[index][0])

    def __getitem__(self, key: int | tuple[int, int, int]) -> tuple[torch.Tensor, int]:
        size, i = parse_key(key, self.image_size, len(self))
        image = self.load(i)
        if self.transform is not None:
            image = apply_at_size(self.transform, image, size)
        else:
            image = fit_to_size(image, size)
        return image, self.samples[i][1]
