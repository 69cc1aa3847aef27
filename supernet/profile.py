"""Measured cost of a built network: fvcore FLOPs (a multiply-add is one FLOP) and parameters."""
from __future__ import annotations

import logging
import warnings

import torch
from torch import nn


def fvcore_flops(model: nn.Module, img_size: int, in_chans: int) -> int:
    """FLOPs of one image through ``model`` in eval mode, as fvcore counts them."""
    was_training = model.training
    model.eval()
    # fvcore logs every op it does not count (softmax, roll, ...); those are free by its convention.
    logging.getLogger("fvcore.nn.jit_analysis").setLevel(logging.ERROR)
    device = next(model.parameters()).device
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # fvcore uses torch.jit, deprecated in torch 2.x
        from fvcore.nn import FlopCountAnalysis
        analysis = FlopCountAnalysis(model, torch.randn(1, in_chans, img_size, img_size, device=device))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        total = int(analysis.total())
    model.train(was_training)
    return total
