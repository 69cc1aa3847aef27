"""Shared command-line checks: the ranges of the recipe and network flags, writable folders."""
import argparse
from dataclasses import fields, replace

import pytest

from nas.cli import COMMANDS, build_parser, main
from nas.cli import search as search_cmd
from nas.cli.check_ranking import STANDALONE_FLAGS
from nas.cli.common import check_writable_dir
from nas.cli.flags import settings_from_args
from nas.cli.train_args import model_options, train_config
from nas.errors import UserError
from nas.settings import (SUPERNET_RECIPE, Cluster, ModelOptions, RankingConfig, RunOptions, SearchConfig, TrainConfig,
                          TrialResources)


def test_every_bounded_setting_is_set_by_a_flag_of_that_name():
    # a typo in a field's flag would name a flag no command has in its refusal
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices.values()
    flags = {option for command in commands for action in command._actions for option in action.option_strings}
    for record in (TrainConfig, ModelOptions, SearchConfig, RankingConfig, RunOptions, TrialResources):
        for f in fields(record):
            if "flag" in f.metadata:
                assert f.metadata["flag"] in flags, (record.__name__, f.name)


def parse(argv: list[str]):
    return build_parser().parse_args(argv)


def test_the_defaults_of_every_command_are_the_records_defaults():
    # each setting has one default, on its field: a command's recipe is a declared record, not flags of its own
    assert train_config(parse(["supernet"])) == SUPERNET_RECIPE
    assert train_config(parse(["search"])) == SUPERNET_RECIPE  # the supernet a search trains when it has none
    assert train_config(parse(["retrain", "--arch", "a.json"])) == TrainConfig()
    assert settings_from_args(TrainConfig(), parse(["check-ranking"]), STANDALONE_FLAGS) == TrainConfig()
    assert search_cmd._config_from_args(parse(["search"])) == SearchConfig(budget_flops=4.5e9)
    assert settings_from_args(RankingConfig(), parse(["check-ranking"])) == RankingConfig()
    for argv in (["supernet"], ["search"], ["retrain", "--arch", "a.json"], ["check-ranking"]):
        assert settings_from_args(Cluster(), parse(argv)) == Cluster()
    for argv in (["supernet"], ["retrain", "--arch", "a.json"]):
        assert model_options(parse(argv)) == ModelOptions()
    assert SUPERNET_RECIPE == replace(TrainConfig(), epochs=SUPERNET_RECIPE.epochs)  # it differs in epochs only


def test_a_flag_given_reaches_its_record():
    args = parse(["search", "--recalib-batches", "3", "--max-failures", "1", "--supernet-seed", "7", "--seed", "5",
                  "--drop-path", "0.1"])
    assert search_cmd._config_from_args(args).recalib_batches == 3 and train_config(args).recalib_batches == 3
    assert settings_from_args(Cluster(), args) == Cluster(max_failures=1)
    assert train_config(args).seed == 7 and search_cmd._config_from_args(args).seed == 5
    assert model_options(args).drop_path_rate == 0.1
    retrain = train_config(parse(["retrain", "--arch", "a.json", "--ema", "0.99", "--mixup", "0.2", "--clip-grad", "0"]))
    assert (retrain.ema_decay, retrain.mixup, retrain.clip_grad) == (0.99, 0.2, None)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_option_of_every_command_shows_its_default_in_help(command):
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    formatter = sub._get_formatter()
    for action in sub._actions:
        if not action.option_strings or action.nargs == 0 or action.required or action.default is argparse.SUPPRESS:
            continue  # switches (off unless given), the required ones, --help
        text = formatter._expand_help(action) if action.help else ""
        assert "default" in text, (command, action.option_strings, text)


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
