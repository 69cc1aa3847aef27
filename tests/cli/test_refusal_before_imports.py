"""A bad flag is refused before torch, timm, Ray, Optuna or fvcore are imported: a typo costs a fraction of a
second, not the ten it takes to import them (the parser and the checks read only ``nas.settings`` and
``searchspace``)."""
import json
import subprocess
import sys

from searchspace import Arch, save_arch_file
from tests.helpers import ROOT

# In a fresh interpreter: run the preamble (argv 2), then each command line (argv 1) through launch.py's main, and
# list the heavy modules then loaded.
SCRIPT = """
import json, sys
exec(sys.argv[2])
from nas.cli import main
codes = []
for argv in json.loads(sys.argv[1]):
    try:
        codes.append(main(argv))
    except SystemExit as e:  # argparse's own refusals (and --help)
        codes.append(e.code)
heavy = sorted(m for m in ("torch", "timm", "ray", "optuna", "fvcore") if m in sys.modules)
print(json.dumps({"codes": codes, "heavy": heavy}))
"""

BAD = [
    ["search", "--budget", "4.5GB"],
    ["search", "--latency-budget", "25"],
    ["search", "--trials", "0"],
    ["search", "--cpus-per-trial", "0"],
    ["search", "--finetune-steps", "-1"],
    ["search", "--sampler", "cmaes"],
    ["search", "--space", "nope"],
    ["supernet", "--path-budget", "4.5GB"],
    ["supernet", "--path-sampler", "bogus"],
    ["supernet", "--dataset", "imagenet"],
    ["retrain", "--arch", "x.json", "--epochs", "0"],
    ["retrain", "--arch", "x.json", "--amp", "fp16"],
    ["retrain", "--arch", "/no/such/arch.json"],
    ["retrain", "--pareto", "/no/such/pareto.json"],
    ["check-ranking", "--seeds", "0"],
    ["check-ranking", "--budget", "1x"],
    ["cost", "--arch", "/no/such/arch.json"],
    ["export", "--run", "/no/such/run"],
    # a missing folder is as cheap to see as a bad flag (these took 7-11 s, the heavy imports first)
    ["search", "--resume", "--search-dir", "/no/such/search"],
    ["export", "--run", "/no/such/run", "--onnx", "m.onnx"],
    ["check-latency", "--table", "/no/such/table.json"],
    # and a supernet file that is missing or no checkpoint (12-14 s before: torch.load was first to say so)
    ["search", "--supernet", "pyproject.toml"],
    ["check-ranking", "--supernet", "/no/such/supernet.pt"],
    # a missing dataset folder, a path budget no arch meets, too few archs to rank (6-7 s before: imports first)
    ["supernet", "--dataset", "cifar10", "--data-root", "/no/such/dir"],
    ["supernet", "--dataset", "imagefolder"],
    ["search", "--dataset", "cifar100", "--data-root", "/no/such/dir"],
    ["supernet", "--path-budget", "1MFLOPs"],
    ["check-ranking", "--supernet", "pyproject.toml", "--archs", "1"],
    # recipe and network values out of range (a traceback, or a silent run, before the settings held their ranges)
    ["supernet", "--lr", "-1"],
    ["supernet", "--drop-path", "1.5"],
    ["search", "--clip-grad", "-1"],
    ["retrain", "--arch", "x.json", "--ema", "1.5"],
    ["check-ranking", "--lr", "nan"],
    ["supernet", "--img-size", "33"],
    # an output folder that cannot be made (a file in the way): a traceback at the first write before
    ["supernet", "--run-dir", "pyproject.toml/sn"],
    ["search", "--search-dir", "pyproject.toml/s"],
]


def run_in_fresh_interpreter(argvs: list[list[str]], preamble: str = "") -> tuple[dict, str]:
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(argvs), preamble], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_bad_flags_exit_2_before_any_heavy_import():
    result, stderr = run_in_fresh_interpreter(BAD)
    assert result["codes"] == [2] * len(BAD), list(zip(result["codes"], BAD))
    assert result["heavy"] == []
    lines = [line for line in stderr.splitlines() if line]
    assert len(lines) == len(BAD) and "Traceback" not in stderr  # one line each
    assert "error: --archs 1: must be >= 2" in lines  # a flag, before its supernet file is read
    assert "error: --ema 1.5: must be in (0, 1)" in lines  # before its arch file is read
    assert "error: --run-dir pyproject.toml/sn: cannot write there (Not a directory)" in lines
    assert "error: --img-size 33 with --patch-size 2: the input side must be a multiple of the stem's patch" in lines


def test_a_missing_dataset_folder_is_refused_before_any_heavy_import(tmp_path):
    # retrain reads the arch first, then the data settings: the folder check must still come before torch
    arch = tmp_path / "arch.json"
    save_arch_file(arch, Arch.from_dict({"stages": [{"mixer": "dwconv", "kernel": 3, "depth": 2, "pool": 1}] * 4}))
    argvs = [["retrain", "--arch", str(arch), "--dataset", "cifar10", "--data-root", "/no/such/dir"],
             ["retrain", "--arch", str(arch), "--dataset", "imagefolder"],
             ["retrain", "--arch", str(arch), "--img-size", "36", "--patch-size", "8"],  # a stem that does not tile
             ["retrain", "--arch", str(arch), "--run-dir", str(arch / "rt")]]  # a file in the way
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.pt").write_bytes(b"")  # export checks only that it is there before the folder
    argvs.append(["export", "--run", str(tmp_path / "run"), "--onnx", str(arch / "m.onnx")])
    result, stderr = run_in_fresh_interpreter(argvs)
    assert result["codes"] == [2] * 5 and result["heavy"] == []
    assert stderr.splitlines() == ["error: cifar10 root '/no/such/dir': no such directory",
                                   "error: dataset 'imagefolder' needs a root folder (root is not set)",
                                   "error: --img-size 36 with --patch-size 8: the input side must be a multiple of "
                                   "the stem's patch",
                                   f"error: --run-dir {arch}/rt: cannot write there (Not a directory)",
                                   f"error: --onnx {arch}/m.onnx: its folder {arch}: cannot write there (Not a "
                                   f"directory)"]


def test_help_of_every_command_needs_no_heavy_import():
    commands = ["space", "cost", "supernet", "search", "retrain", "check-ranking", "export"]
    result, _ = run_in_fresh_interpreter([[c, "--help"] for c in commands])
    assert result["codes"] == [0] * len(commands)
    assert result["heavy"] == []


def test_the_probe_sees_a_heavy_import():  # the probe itself: a test that cannot fail would be no test
    result, _ = run_in_fresh_interpreter([["search", "--budget", "4.5GB"]], preamble="import nas.data.datasets")
    assert result["codes"] == [2]
    assert "torch" in result["heavy"]


def test_flags_that_contradict_a_supernet_are_refused_before_any_heavy_import(tmp_path):
    """The supernet's job, space and settings are read without torch (``nas.runs.record.read_supernet_record``); these took 5-9 s
    before, the supernet loaded by torch first (docs/BENCHMARKS.md)."""
    import torch

    from nas.runs import checkpoint as ckpt
    from tests.helpers import ARCH, BUDGET, TINY_SPACE, save_untrained_supernet

    save_untrained_supernet(tmp_path / "supernet.pt")
    ckpt.save_atomic({"model": {"w": torch.ones(2)}}, tmp_path / "model.pt")
    (tmp_path / "space.json").write_text(json.dumps(TINY_SPACE))
    save_arch_file(tmp_path / "arch.json", ARCH)
    outside = ARCH.to_dict()
    outside["stages"][0]["kernel"] = 9  # the space has 3 and 5
    (tmp_path / "archs.json").write_text(json.dumps({"archs": [ARCH.to_dict(), outside]}))
    sn, space = str(tmp_path / "supernet.pt"), str(tmp_path / "space.json")
    cases = [
        (["search", "--space", space, "--supernet", sn, "--train-subset", "200"], "--train-subset 200 contradicts"),
        (["search", "--space", space, "--supernet", sn, "--embed-dim", "32"], "--embed-dim 32 contradicts"),
        (["search", "--supernet", sn], "trained over another search space"),
        (["search", "--space", space, "--supernet", str(tmp_path / "model.pt")], "not a supernet checkpoint"),
        (["retrain", "--arch", str(tmp_path / "arch.json"), "--space", space, "--init", "supernet", "--supernet", sn,
          "--no-augment"], "--no-augment contradicts"),
        (["check-ranking", "--supernet", sn, "--archs-file", str(tmp_path / "archs.json")], "field 'kernel': 9"),
        (["check-ranking", "--supernet", sn, "--budget", "1MFLOPs"], "below the cheapest arch"),
        (["check-ranking", "--supernet", sn, "--archs", "40", "--budget", BUDGET], "distinct archs within"),
        (["check-ranking", "--supernet", str(tmp_path / "ro" / "supernet.pt"), "--budget", BUDGET],
         "the ranking folder"),  # its ranking folder, beside the supernet, cannot be made: a file in the way
    ]
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "supernet.pt").write_bytes((tmp_path / "supernet.pt").read_bytes())
    (tmp_path / "ro" / "ranking").write_text("not a folder")
    result, stderr = run_in_fresh_interpreter([argv for argv, _ in cases])
    assert result["codes"] == [2] * len(cases), list(zip(result["codes"], cases))
    assert result["heavy"] == []
    lines = [line for line in stderr.splitlines() if line]
    assert len(lines) == len(cases) and "Traceback" not in stderr
    for line, (_, message) in zip(lines, cases):
        assert message in line, (line, message)
