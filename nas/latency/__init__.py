"""Latency: the timing harness (``timing``: how a call is timed on a device, and one timing at a time per device)
and the per-device lookup table of measured blocks (``table``)."""
