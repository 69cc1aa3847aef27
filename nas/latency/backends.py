"""Where a latency is measured (``nas.settings.LATENCY_BACKENDS``): PyTorch (eager on a CPU, a CUDA graph on a GPU)
or an ONNX Runtime session on the CPU, the way a network deployed behind an ONNX Runtime service runs.

A backend turns a module and its example inputs into a call to time (:func:`timed_call`); the table times its
components and whole networks through it, and ``check-latency`` and ``export`` time whole networks the same way.
"""
from __future__ import annotations

import platform
import sys
from typing import Any, Callable

import torch
from torch import nn

from nas.latency.timing import as_device, processor_name, time_call



def ort_session(model: bytes | str, threads: int):
    """An ONNX Runtime session of ``model`` (serialized bytes, or an .onnx file) on the CPU execution provider,
    with ``threads`` intra-op threads, one op at a time."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # A session's worker threads spin after each run by default. A table holds one session per component, timed in
    # turn: the last one's spinning threads took the cores from the next (components summed to 5-8x the whole
    # network on 2 cores). Without spinning, each session has the cores to itself, as one network's ops do.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class OrtCall:
    """``module`` exported as ``launch.py export`` exports a network (``nas.export.onnx_model``), in an
    :func:`ort_session`; calling it runs the session on the example inputs."""

    def __init__(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], threads: int) -> None:
        from nas.export import onnx_model

        proto = onnx_model(module.eval(), tuple(t.cpu() for t in inputs))
        self.session = ort_session(proto.SerializeToString(), threads)
        self.feed = {i.name: t.cpu().numpy() for i, t in zip(self.session.get_inputs(), inputs)}

    def __call__(self) -> Any:
        return self.session.run(None, self.feed)


def timed_call(backend: str, module: nn.Module, inputs: tuple[torch.Tensor, ...], threads: int) -> Callable[[], Any]:
    """The call that runs ``module`` on ``inputs`` in ``backend`` (PyTorch: in inference mode)."""
    if backend == "onnxruntime":
        return OrtCall(module, inputs, threads)

    def call():
        with torch.inference_mode():
            return module(*inputs)
    return call


def network_call(backend: str, net: nn.Module, settings, *, batch_size: int, threads: int,
                 device: str | torch.device = "cpu") -> Callable[[], Any]:
    """The call that runs ``net`` (moved to ``device``, in eval mode) on a batch of random images in ``backend``."""
    device = as_device(device)
    net = net.to(device).eval()
    x = torch.randn(batch_size, settings.in_chans, settings.img_size, settings.img_size, device=device)
    return timed_call(backend, net, (x,), threads)


def time_prepared(call: Callable[[], Any], backend: str, device: str | torch.device, *, warmup: int,
                  repeats: int) -> float:
    """Median seconds of ``call`` (a CUDA graph on a GPU for PyTorch; ONNX Runtime's calls as they are)."""
    return time_call(call, device, warmup=warmup, repeats=repeats, method="eager" if backend == "onnxruntime" else None)


def describe_machine(backend: str, device: str | torch.device) -> dict:
    """The processor a table was measured on, and the software that ran it."""
    processor = processor_name(device)
    software = {"python": platform.python_version(), "torch": torch.__version__}
    if backend == "onnxruntime":
        import onnxruntime

        software["onnxruntime"] = onnxruntime.__version__
    return {"processor": processor, "platform": platform.platform(), "software": software,
            "argv": " ".join(sys.argv)}


__all__ = ["ort_session", "OrtCall", "timed_call", "network_call", "time_prepared", "describe_machine"]
