"""benchmarks/cli_refusal.py: times launch.py's refusals in two checkouts and fails on a refusal that is not
one line and exit code 2."""
import pytest
import json
import subprocess

from tests.helpers import ROOT, run_benchmark, save_untrained_supernet


def run_script(*args: str, cwd) -> subprocess.CompletedProcess:
    return run_benchmark("cli_refusal", *args, cwd=cwd, timeout=300)


@pytest.mark.slow
def test_times_both_checkouts_and_writes_the_ratios(tmp_path):
    # with a supernet: three more refusals, by the data and space it recorded
    save_untrained_supernet(tmp_path / "supernet.pt")
    done = run_script("--reference", str(ROOT), "--rounds", "1", "--out", str(tmp_path), "--supernet", "supernet.pt",
                      cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "cli_refusal.json").read_text())
    assert len(result["rows"]) == 14 and result["summary"]["rounds"] == 1
    assert "--train-subset 1001" in result["rows"][11]["command"]  # the tiny job's 1000 images, contradicted
    assert all(r["this_s"] > 0 and r["reference_s"] > 0 for r in result["rows"])
    assert (tmp_path / "cli_refusal.csv").exists()


def test_a_reference_that_does_not_refuse_properly_exits_2(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "launch.py").write_text("import sys\nprint('a traceback', file=sys.stderr)\nsys.exit(1)\n")
    done = run_script("--reference", str(broken), "--rounds", "1", "--out", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2
    assert "gave exit 1" in done.stderr and "Traceback" not in done.stderr
    missing = run_script("--reference", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert missing.returncode == 2 and "no launch.py" in missing.stderr
