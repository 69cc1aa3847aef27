"""Export a retrained model to ONNX and check it with onnxruntime against PyTorch."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from nas.errors import UserError
from nas.hub import load_model
from searchspace import atomic_path


def export_onnx(run: str | Path, onnx_path: str | Path, *, batch_size: int = 1, opset: int = 18,
                check: bool = True, atol: float = 1e-4) -> dict:
    """Write ``onnx_path`` (atomically) from the retrained model in ``run``; with ``check``, run it in
    onnxruntime on random input and return the largest absolute difference from PyTorch."""
    try:
        import onnx  # noqa: F401  (torch.onnx needs it)
        import onnxruntime as ort
    except ImportError:
        raise UserError("ONNX export needs onnx and onnxruntime: pip install -e '.[export]'") from None
    model = load_model(run)
    s = model.settings
    # The dynamic conv folds the batch into its groups, so the graph is exported for one batch size.
    # torch.export (dynamo=True) handles its generated kernels; the TorchScript exporter cannot.
    example = torch.randn(batch_size, s.in_chans, s.img_size, s.img_size)
    onnx_path = Path(onnx_path)
    with atomic_path(onnx_path) as tmp, torch.no_grad(), warnings.catch_warnings():
        # Shapes are constants in a fixed-size export: the tracer's warnings about them are expected.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(model, (example,), str(tmp), input_names=["image"], output_names=["logits"],
                          opset_version=opset, dynamo=True)
    result = {"onnx": str(onnx_path), "batch_size": batch_size, "input": [batch_size, s.in_chans, s.img_size, s.img_size]}
    if check:
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        x = torch.randn(batch_size, s.in_chans, s.img_size, s.img_size)
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(["logits"], {"image": x.numpy()})[0]
        diff = float(np.abs(got - expected).max())
        result.update(max_abs_diff=diff, matches=diff <= atol, atol=atol)
    return result
