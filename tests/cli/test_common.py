"""Shared command-line checks: the ranges of the recipe and network flags, writable folders."""
from dataclasses import fields

import pytest

from nas.cli import build_parser, main
from nas.cli.common import check_writable_dir
from nas.errors import UserError
from nas.settings import ModelOptions, RankingConfig, SearchConfig, TrainConfig


def test_every_bounded_setting_is_set_by_a_flag_of_that_name():
    # a typo in a field's flag would name a flag no command has in its refusal
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices.values()
    flags = {option for command in commands for action in command._actions for option in action.option_strings}
    for record in (TrainConfig, ModelOptions, SearchConfig, RankingConfig):
        for f in fields(record):
            if "flag" in f.metadata:
                assert f.metadata["flag"] in flags, (record.__name__, f.name)


@pytest.mark.parametrize("argv", [["supernet"], ["search"], ["retrain", "--arch", "a.json"], ["check-ranking"]])
def test_the_defaults_of_every_command_make_valid_settings(argv):
    args = build_parser().parse_args(argv)
    TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
    ModelOptions(getattr(args, "embed_dim", None), getattr(args, "patch_size", None), getattr(args, "drop_path", 0.0))


@pytest.mark.parametrize("argv, message", [
    (["supernet", "--lr", "-1"], "--lr -1: must be > 0"),
    (["supernet", "--weight-decay", "-0.1"], "--weight-decay -0.1: must be >= 0"),
    (["supernet", "--warmup-epochs", "-1"], "--warmup-epochs -1: must be >= 0"),
    (["search", "--label-smoothing", "1"], "--label-smoothing 1: must be in [0, 1)"),
    (["retrain", "--arch", "a.json", "--clip-grad", "-5"], "--clip-grad -5: must be >= 0"),
    (["check-ranking", "--recalib-batches", "-1"], "--recalib-batches -1: must be >= 0"),
    (["supernet", "--drop-path", "nan"], "--drop-path nan: must be in [0, 1)"),
    (["supernet", "--num-workers", "0"], "--num-workers 0: must be >= 1"),
    (["supernet", "--embed-dim", "0"], "--embed-dim 0: must be >= 1"),  # 0 used to mean the default, silently
    (["retrain", "--arch", "a.json", "--patch-size", "0"], "--patch-size 0: must be >= 1"),
    (["retrain", "--arch", "a.json", "--ema", "1"], "--ema 1: must be in (0, 1)"),
    (["retrain", "--arch", "a.json", "--mixup", "-0.2"], "--mixup -0.2: must be >= 0"),
    (["retrain", "--arch", "a.json", "--cutmix", "inf"], "--cutmix inf: must be >= 0"),
    (["search", "--latency-batch", "0"], "--latency-batch 0: must be >= 1"),
    (["search", "--trials", "0"], "--trials 0: must be >= 1"),
    (["check-ranking", "--seeds", "0"], "--seeds 0: must be >= 1"),
    (["check-ranking", "--archs", "1"], "--archs 1: must be >= 2"),
    (["search", "--max-failures", "-1"], "--max-failures -1: must be >= 0"),
    (["check-ranking", "--max-failures", "-2"], "--max-failures -2: must be >= 0"),
    (["retrain", "--pareto", "p.json", "--max-failures", "-1"], "--max-failures -1: must be >= 0"),
])
def test_a_value_out_of_range_exits_2_naming_flag_value_and_range(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing is written: a refusal comes before any work
    assert main(argv) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert list(tmp_path.iterdir()) == []


def test_a_writable_folder_passes_and_the_folders_made_to_find_out_are_removed(tmp_path):
    check_writable_dir(tmp_path, "--run-dir")
    check_writable_dir(tmp_path / "a" / "b", "--run-dir")
    assert list(tmp_path.iterdir()) == []  # nothing left: the run makes its folder itself


def test_a_folder_that_cannot_be_made_is_refused_and_nothing_is_left(tmp_path):
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(UserError, match=f"^--search-dir {tmp_path}/file/s: cannot write there \\(Not a directory\\)$"):
        check_writable_dir(tmp_path / "file" / "s", "--search-dir")
    # "new" is made, then its child cannot be (a name too long): "new" is removed again
    with pytest.raises(UserError, match="^the run folder .*: cannot write there \\(File name too long\\)$"):
        check_writable_dir(tmp_path / "new" / ("x" * 300), "the run folder")
    assert [p.name for p in tmp_path.iterdir()] == ["file"]
