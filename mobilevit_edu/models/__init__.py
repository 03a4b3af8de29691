"""Whole networks (§3.1, §4.1, Table 4): MobileViT XXS/XS/S (``mobilevit``), the MobileNetV2 and
ViT baselines (``baselines``), the registry behind ``create_model`` (``registry``), checkpoints in
four layouts (``checkpoints``) and BatchNorm calibration (``batchnorm``).

Every model keeps one feature contract: ``forward_intermediates(x)`` returns one ``[B, C, H, W]``
map per stage (described by ``feature_info``), ``forward_features(x)`` the last one, and
``forward(x) == forward_head(forward_features(x))``."""
