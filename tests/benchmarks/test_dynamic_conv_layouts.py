"""benchmarks/dynamic_conv_layouts.py compares the dynamic DW conv's two fold layouts: they must compute the same
numbers (else its timings compare different ops), and its swap must reach every dynamic mixer of a network."""
import pytest
import json

import torch

from benchmarks import dynamic_conv_layouts as layouts
from supernet import MixerNet
from tests.helpers import TINY, run_benchmark, swin_t_arch


def test_the_layouts_agree_forward_and_backward_in_a_network():
    torch.manual_seed(0)
    net = MixerNet.from_arch(swin_t_arch("dynamic_dwconv", 5), TINY).train()
    x = torch.randn(3, TINY.in_chans, TINY.img_size, TINY.img_size)
    outputs, grads = {}, {}
    for layout in layouts.LAYOUTS:
        layouts.use_layout(net, layout)
        net.zero_grad(set_to_none=True)
        out = net(x)
        out.square().sum().backward()
        outputs[layout] = out.detach()
        grads[layout] = [p.grad.clone() for p in net.parameters() if p.grad is not None]
    torch.testing.assert_close(outputs["channels_last"], outputs["nchw"], rtol=1e-5, atol=1e-5)
    for a, b in zip(grads["channels_last"], grads["nchw"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    swapped = [m for m in net.modules() if "depthwise" in vars(m)]
    assert len(swapped) == sum(1 for m in net.modules() if isinstance(m, layouts.DynamicDWConvMixer)) > 0


@pytest.mark.slow
def test_the_script_times_the_op_and_writes_its_rows(tmp_path):
    out = tmp_path / "layouts"
    args = ["--device", "cpu", "--sections", "op", "--dtypes", "fp32", "--batch", "1", "--repeats", "1",
            "--warmup", "0", "--out", str(out)]
    done = run_benchmark("dynamic_conv_layouts", *args)
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [(r["channels"], r["side"]) for r in rows] == [(96, 56), (192, 28), (384, 14), (768, 7)]
    assert all(r["max_abs_diff_fp32"] == 0 and r["nchw_ms"] > 0 and r["channels_last_ms"] > 0 for r in rows)
