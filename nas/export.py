"""Export a retrained model to ONNX and check it with onnxruntime against PyTorch."""
from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from nas.errors import UserError
from nas.settings import ONNX_MIN_OPSET
from searchspace import atomic_path


@contextlib.contextmanager
def _log_level(logger: logging.Logger, level: int):
    saved = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(saved)


def onnx_model(module: torch.nn.Module, example: tuple, *, opset: int = ONNX_MIN_OPSET,
               input_names: list[str] | None = None, output_names: list[str] | None = None):
    """``module`` (in eval mode) as an ONNX model for inputs shaped as ``example``, the way ``launch.py export``
    writes a network: torch.export (``dynamo=True``, which handles the dynamic conv's generated kernels; the
    TorchScript exporter cannot), at ``opset``. A failed opset conversion is a UserError."""
    # A failed opset conversion is reported below, in one line: not also as onnxscript's logged traceback.
    converter_log = logging.getLogger("onnxscript.version_converter")
    with torch.no_grad(), warnings.catch_warnings(), _log_level(converter_log, logging.ERROR):
        # Shapes are constants in a fixed-size export: the tracer's warnings about them are expected.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        program = torch.onnx.export(module, example, input_names=input_names, output_names=output_names,
                                    opset_version=opset, dynamo=True, verbose=False)
    proto = program.model_proto
    # torch keeps the opset it wrote when the conversion to another fails, and goes on without a word
    written = {o.domain: o.version for o in proto.opset_import}
    if written.get("", opset) != opset:
        raise UserError(f"--opset {opset}: torch could not convert this network to it (it wrote opset "
                        f"{written['']}); nothing was written")
    return proto


def export_onnx(model: torch.nn.Module, onnx_path: str | Path, *, batch_size: int = 1, opset: int = ONNX_MIN_OPSET,
                check: bool = True, atol: float = 1e-4) -> dict:
    """Write ``onnx_path`` (atomically) from a retrained ``model`` (``nas.hub.load_model``); with ``check``, run it
    in onnxruntime on random input and return the largest absolute difference from PyTorch."""
    try:
        import onnx  # torch.onnx needs it
        import onnxruntime as ort
    except ImportError:
        raise UserError("ONNX export needs onnx and onnxruntime: pip install -e '.[export]'") from None
    newest = onnx.defs.onnx_opset_version()
    if opset > newest:
        raise UserError(f"--opset {opset}: onnx {onnx.__version__} knows opsets up to {newest}")
    s = model.settings
    # The dynamic conv folds the batch into its groups, so the graph is exported for one batch size.
    # torch.export (dynamo=True) handles its generated kernels; the TorchScript exporter cannot.
    example = torch.randn(batch_size, s.in_chans, s.img_size, s.img_size)
    onnx_path = Path(onnx_path)
    proto = onnx_model(model, (example,), opset=opset, input_names=["image"], output_names=["logits"])
    with atomic_path(onnx_path) as tmp:
        tmp.write_bytes(proto.SerializeToString())  # the weights inside the one file: a copy of it alone loads
    result = {"onnx": str(onnx_path), "batch_size": batch_size, "input": [batch_size, s.in_chans, s.img_size, s.img_size]}
    if check:
        try:
            session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own error classes: an opset newer than it runs, above all
            raise UserError(f"wrote {onnx_path} (opset {opset}), but onnxruntime {ort.__version__} cannot load it to "
                            f"check it: {str(e).splitlines()[0][:200]}") from None
        x = torch.randn(batch_size, s.in_chans, s.img_size, s.img_size)
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(["logits"], {"image": x.numpy()})[0]
        diff = float(np.abs(got - expected).max())
        result.update(max_abs_diff=diff, matches=diff <= atol, atol=atol)
    return result
