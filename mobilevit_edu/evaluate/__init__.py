"""Evaluating released weights against the paper's headline numbers (§4.1 Fig. 8, Table 1,
Table 2): ``python -m mobilevit_edu.evaluate classify|detect|segment --weights FILE --data PATH``.

* :mod:`~mobilevit_edu.evaluate.origins` -- what each origin of the weights (cvnets v0.1 and
  Hugging Face, timm, the book) fed them: channel order, resize, crop; ``preprocessing_for``;
* :mod:`~mobilevit_edu.evaluate.classify` -- ``load_classifier`` (layout and size from the file)
  and ``evaluate_imagenet``: top-1 / top-5 on an ImageFolder validation tree;
* :mod:`~mobilevit_edu.evaluate.headline` -- the paper's and the released checkpoints' numbers;
* :mod:`~mobilevit_edu.evaluate.cli` -- the command line; ``detect`` and ``segment`` call
  :mod:`mobilevit_edu.detection.evaluate` and :mod:`mobilevit_edu.segmentation.evaluate`.

This layer sits above detection and segmentation and below plots and book.
"""

from mobilevit_edu.evaluate.classify import (
    ClassCountError, evaluate_imagenet, load_classifier, spread_indices, topk_hits,
)
from mobilevit_edu.evaluate.cli import main
from mobilevit_edu.evaluate.headline import Headline, compare_line, headline
from mobilevit_edu.evaluate.origins import ORIGINS, Preprocessing, preprocessing_for

__all__ = [
    "Preprocessing", "ORIGINS", "preprocessing_for", "load_classifier", "evaluate_imagenet",
    "topk_hits", "spread_indices", "ClassCountError", "Headline", "headline", "compare_line",
    "main",
]
