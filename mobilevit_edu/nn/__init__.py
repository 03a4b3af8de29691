"""The paper's parts (§3.1, Fig. 1b), pure torch and einops: conv-BN-SiLU and ``make_divisible``
(``layers``), the MobileNetV2 inverted residual (``mv2``), unfold/fold (``patches``), multi-head
self-attention (``attention``), the pre-norm encoder layer (``transformer``) and the MobileViT
block (``block``). Nothing here draws, reads or writes files."""
