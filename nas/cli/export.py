"""``launch.py export --run DIR --onnx FILE``: the retrained model as ONNX, checked with onnxruntime."""
from __future__ import annotations

import argparse
from pathlib import Path

from nas.errors import UserError
from nas.runs.layout import model_file
from nas.settings import ONNX_MIN_OPSET

from .common import check_writable_dir

HELP = "export a retrained model to ONNX and check it against PyTorch with onnxruntime"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, metavar="DIR", help="a retrain folder (holding model.pt)")
    parser.add_argument("--onnx", required=True, metavar="FILE", help="the ONNX file to write")
    parser.add_argument("--batch-size", type=int, default=1, help="the exported graph's batch size")
    parser.add_argument("--opset", type=int, default=ONNX_MIN_OPSET,
                        help=f"ONNX opset, {ONNX_MIN_OPSET} or above (default {ONNX_MIN_OPSET})")


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

    result = export_onnx(args.run, args.onnx, batch_size=args.batch_size, opset=args.opset)
    verdict = "matches" if result["matches"] else "DOES NOT match"
    print(f"wrote {result['onnx']} (input {result['input']}); onnxruntime {verdict} PyTorch: "
          f"max |diff| {result['max_abs_diff']:.2e} (tolerance {result['atol']:.0e})")
    return 0 if result["matches"] else 1
