"""MobileViT from Scratch: the library behind the book.

The library is layered; each layer imports only the ones before it (README, "Layout"):

* ``mobilevit_edu.nn`` -- the paper's parts (§3.1): conv blocks, MV2, unfold/fold, attention,
  the transformer, the MobileViT block; torch and einops only;
* ``mobilevit_edu.models`` -- MobileViT XXS/XS/S (Table 4), the baselines, the registry,
  checkpoints of three layouts, one feature contract (``forward_intermediates``);
* ``mobilevit_edu.data``, ``.measure``, ``.deploy`` -- data and the sampler (§3.3); MACs, memory,
  latency and receptive fields; BN folding, compilation and export;
* ``mobilevit_edu.train`` -- the recipe (§4.1) and one loop for every task;
* ``mobilevit_edu.detection``, ``.segmentation`` -- SSDLite and DeepLabv3 (§4.2);
* ``mobilevit_edu.evaluate`` -- ``python -m mobilevit_edu.evaluate``: the paper's numbers from the
  released weights (§4.1, Table 1, Table 2); ``mobilevit_edu.experiments`` -- the protocol of the
  small-scale experiments (seeds, a ledger, intervals, verdicts);
* ``mobilevit_edu.plots`` -- every figure; ``mobilevit_edu.book`` -- the book's own tooling.

The names a reader reaches for first are here: ``create_model``, ``load_checkpoint``, the model
and block classes, ``unfold``/``fold`` and ``count_macs`` (loaded on first use: it needs fvcore).
"""

from mobilevit_edu.models.checkpoints import load_checkpoint
from mobilevit_edu.models.mobilevit import MobileViT
from mobilevit_edu.models.registry import create_model, list_models
from mobilevit_edu.nn.block import MobileViTBlock
from mobilevit_edu.nn.layers import ConvBNAct
from mobilevit_edu.nn.mv2 import InvertedResidual
from mobilevit_edu.nn.patches import fold, unfold

__version__ = "0.1.0"
__all__ = [
    "create_model", "list_models", "load_checkpoint", "MobileViT", "MobileViTBlock",
    "InvertedResidual", "ConvBNAct", "unfold", "fold", "count_macs", "__version__",
]


def __getattr__(name: str):
    if name == "count_macs":  # fvcore is imported only by a reader who counts
        from mobilevit_edu.measure.flops import count_macs

        return count_macs
    raise AttributeError(f"module 'mobilevit_edu' has no attribute {name!r}")
