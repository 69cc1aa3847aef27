"""Each latency backend runs the very network it is given: ONNX Runtime's output is PyTorch's."""
import numpy as np
import pytest
import torch

from nas.latency.backends import describe_machine, network_call, time_prepared
from nas.latency.timing import device_tag
from nas.settings import LATENCY_BACKENDS
from supernet import MixerNet
from tests.helpers import ARCH, TINY


@pytest.mark.parametrize("backend", [pytest.param(b, marks=pytest.mark.slow) if b == "onnxruntime" else b
                                     for b in LATENCY_BACKENDS])  # an export takes seconds
def test_a_backend_runs_the_network_and_times_it(backend):
    torch.manual_seed(0)
    net = MixerNet.from_arch(ARCH, TINY).eval()
    call = network_call(backend, net, TINY, batch_size=2, threads=1)
    out = call()
    got = out[0] if backend == "onnxruntime" else out.numpy()
    x = call.feed[next(iter(call.feed))] if backend == "onnxruntime" else None
    if x is not None:  # the session's own input through PyTorch
        with torch.no_grad():
            expected = net(torch.from_numpy(x)).numpy()
        assert np.abs(got - expected).max() <= 1e-4
    assert got.shape == (2, TINY.num_classes)
    assert time_prepared(call, backend, "cpu", warmup=0, repeats=2) > 0


def test_the_device_tag_names_backend_threads_and_batch():
    assert device_tag("cpu", 4, "onnxruntime", 3).startswith("onnxruntime-cpu-")
    assert device_tag("cpu", 4, "onnxruntime", 3).endswith("-t3-b4")
    assert describe_machine("onnxruntime", "cpu")["software"]["onnxruntime"]
