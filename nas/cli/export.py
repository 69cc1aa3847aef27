"""``launch.py export --run DIR --onnx FILE``: the retrained model as ONNX, checked with onnxruntime."""
from __future__ import annotations

import argparse

from nas.jobs import model_file

HELP = "export a retrained model to ONNX and check it against PyTorch with onnxruntime"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, metavar="DIR", help="a retrain folder (holding model.pt)")
    parser.add_argument("--onnx", required=True, metavar="FILE", help="the ONNX file to write")
    parser.add_argument("--batch-size", type=int, default=1, help="the exported graph's batch size")
    parser.add_argument("--opset", type=int, default=18)


def run(args: argparse.Namespace) -> int:
    model_file(args.run)  # a wrong folder is refused before torch and onnx are imported (seconds)
    from nas.export import export_onnx

    result = export_onnx(args.run, args.onnx, batch_size=args.batch_size, opset=args.opset)
    verdict = "matches" if result["matches"] else "DOES NOT match"
    print(f"wrote {result['onnx']} (input {result['input']}); onnxruntime {verdict} PyTorch: "
          f"max |diff| {result['max_abs_diff']:.2e} (tolerance {result['atol']:.0e})")
    return 0 if result["matches"] else 1
