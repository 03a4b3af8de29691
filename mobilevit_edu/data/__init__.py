"""Data for the book: the rendered shapes data set, readers for your own data, the paper's
augmentations, a real photograph, and the multi-scale sampler.

Paper: §4.1 ("basic data augmentation (i.e., random resized cropping and horizontal flipping)")
and §3.3 (the multi-scale sampler asks the data set for each image at a resolution chosen per
batch, so every data set here takes ``ds[i]`` and ``ds[(h, w, i)]``). One module per concern:

* ``shapes``     the procedurally rendered shapes data set (labels, boxes, masks) and ``parse_key``;
* ``transforms`` Resize, CenterCrop, RandomResizedCrop, flips, the train / eval pipelines;
* ``detection_transforms``    SSD's crop, photometric distortion, flip, resize (image, boxes, labels);
* ``segmentation_transforms`` DeepLabv3's random short side, crop 512, flip (image, mask);
* ``readers``    CIFAR-10 python batches, ImageFolder trees, ``load_rgb``;
* ``photos``     a real photograph and batches of crops of it;
* ``sampler``    the multi-scale and standard batch samplers (import ``mobilevit_edu.data.sampler``).

The names below are re-exported so that ``from mobilevit_edu.data import ShapesDataset`` works.
"""

from mobilevit_edu.data.detection_transforms import (
    PhotometricDistort,
    SSDRandomCrop,
    ssd_eval_transform,
    ssd_train_transform,
)
from mobilevit_edu.data.readers import CIFAR10, CIFAR10_URL, IMAGE_EXTENSIONS, ImageFolder, load_rgb
from mobilevit_edu.data.shapes import (
    PALETTE,
    SHAPES,
    TASKS,
    Sample,
    Scene,
    ShapeObject,
    ShapesDataset,
    make_scene,
    parse_key,
    render_scene,
)
from mobilevit_edu.data.segmentation_transforms import (
    RandomShortSideResize,
    deeplab_eval_transform,
    deeplab_train_transform,
)
from mobilevit_edu.data.transforms import (
    CenterCrop,
    Compose,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    apply_at_size,
    eval_transform,
    fit_to_size,
    resize_image,
    train_transform,
    transform_at_size,
)

__all__ = [
    "SHAPES",
    "PALETTE",
    "TASKS",
    "ShapeObject",
    "Scene",
    "Sample",
    "ShapesDataset",
    "render_scene",
    "make_scene",
    "parse_key",
    "CIFAR10",
    "CIFAR10_URL",
    "ImageFolder",
    "IMAGE_EXTENSIONS",
    "load_rgb",
    "Compose",
    "RandomResizedCrop",
    "RandomHorizontalFlip",
    "Resize",
    "CenterCrop",
    "train_transform",
    "eval_transform",
    "transform_at_size",
    "apply_at_size",
    "fit_to_size",
    "resize_image",
    "SSDRandomCrop",
    "PhotometricDistort",
    "ssd_train_transform",
    "ssd_eval_transform",
    "RandomShortSideResize",
    "deeplab_train_transform",
    "deeplab_eval_transform",
]
