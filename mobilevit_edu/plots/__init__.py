"""Every figure of the book, grouped by idea: ``blocks`` (chapters 02-05), ``receptive_fields``
(02, 03, 05, 08), ``network`` (06), ``cost`` (07), ``sampler`` and ``data`` (09), ``training``
(10, 11), ``detection`` (12), ``segmentation`` (13), ``deployment`` (14), ``paper`` (01) and
``report`` (15).

One convention: a ``plot_*`` function draws, returns the figure, and saves
``figures/<name>.png`` (through ``save.finish``) only when it is given ``name=``."""
