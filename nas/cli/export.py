"""``launch.py export --run DIR --onnx FILE``: the retrained model as ONNX, checked with onnxruntime."""
from __future__ import annotations

import argparse
from pathlib import Path

from nas.errors import UserError
from nas.runs.layout import LATENCY_TABLE, model_file
from nas.settings import ONNX_MIN_OPSET

from .common import check_writable_dir

HELP = "export a retrained model to ONNX and check it against PyTorch with onnxruntime"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, metavar="DIR", help="a retrain folder (holding model.pt)")
    parser.add_argument("--onnx", required=True, metavar="FILE", help="the ONNX file to write")
    parser.add_argument("--batch-size", type=int, default=1, help="the exported graph's batch size")
    parser.add_argument("--opset", type=int, default=ONNX_MIN_OPSET,
                        help=f"ONNX opset, {ONNX_MIN_OPSET} or above (default {ONNX_MIN_OPSET})")
    parser.add_argument("--latency-table", metavar="FILE", default=None,
                        help="report the model's latency in this table's backend and threads, beside its prediction "
                             "(default: the table of the search the run retrained, if it used one; else PyTorch here)")


def run(args: argparse.Namespace) -> int:
    model_file(args.run)  # a wrong folder is refused before torch and onnx are imported (seconds)
    if args.opset < ONNX_MIN_OPSET:
        # torch.onnx (dynamo) writes opset 18 and leaves other opsets to ONNX's version converter, which has no
        # adapter for these networks' ops below 18: it kept 18 without a word (13 and 17 were tried)
        raise UserError(f"--opset {args.opset}: these networks export at opset {ONNX_MIN_OPSET} or above")
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: must be >= 1")
    check_writable_dir(Path(args.onnx).parent, f"--onnx {args.onnx}: its folder")
    from nas.export import export_onnx
    from nas.hub import load_model

    model = load_model(args.run)
    result = export_onnx(model, args.onnx, batch_size=args.batch_size, opset=args.opset)
    verdict = "matches" if result["matches"] else "DOES NOT match"
    print(f"wrote {result['onnx']} (input {result['input']}); onnxruntime {verdict} PyTorch: "
          f"max |diff| {result['max_abs_diff']:.2e} (tolerance {result['atol']:.0e})")
    print(_latency_line(args, model))
    return 0 if result["matches"] else 1


def _latency_line(args: argparse.Namespace, model) -> str:
    """The exported model's latency here, in the backend the search's latency axis used (the search's own table
    when the run sits in its search folder), beside what that table predicted."""
    import torch

    from nas.latency.backends import network_call, ort_session, time_prepared
    from nas.latency.table import LatencyTable

    table_path = Path(args.latency_table) if args.latency_table else Path(args.run).resolve().parent / LATENCY_TABLE
    table = LatencyTable.load(table_path) if args.latency_table or table_path.exists() else None
    backend = table.backend if table else "torch"
    threads = int(table.meta.get("threads") or torch.get_num_threads()) if table else torch.get_num_threads()
    if backend == "onnxruntime":
        session = ort_session(args.onnx, threads)
        s = model.settings
        feed = {session.get_inputs()[0].name: torch.randn(args.batch_size, s.in_chans, s.img_size,
                                                          s.img_size).numpy()}

        def call():  # the exported file itself, as it will be served
            return session.run(None, feed)
    else:
        call = network_call("torch", model, model.settings, batch_size=args.batch_size, threads=threads)
    measured = time_prepared(call, backend, "cpu", warmup=3, repeats=10)
    line = f"latency here: {measured * 1e3:.2f} ms in {backend} ({threads} threads, batch {args.batch_size})"
    if table is not None and table.settings == model.settings and table.batch_size == args.batch_size:
        predicted = table.predict(model.active_arch)
        line += f"; the search's table ({table.device}) predicted {predicted * 1e3:.2f} ms"
    return line
