"""Measuring a network (chapters 07 and 08; Tables 3, 6, 8, 11, Fig. 4): multiply-adds
(``flops.count_macs``), memory per output stride (``memory``), latency, timing only
(``latency``), time and exponentials per operator (``operators``) and receptive fields
(``receptive_field``). Making a network faster is ``mobilevit_edu.deploy``'s job."""
