"""Shared command-line checks: the bounds of the recipe and network flags."""
import argparse

import pytest

from nas.cli import build_parser
from nas.cli.common import FLAG_BOUNDS, Bound, check_flag_bounds, check_writable_dir
from nas.errors import UserError


@pytest.mark.parametrize("bound, inside, outside", [
    (Bound(0, low_open=True), [1e-9, 2e-3, 1e3], [0, -1, float("nan"), float("inf")]),
    (Bound(0), [0, 0.05, 7], [-1e-9, -5, float("-inf")]),
    (Bound(0, 1, high_open=True), [0, 0.1, 0.999], [1, 1.5, -0.1, float("nan")]),
    (Bound(0, 1, low_open=True, high_open=True), [0.5, 0.9999], [0, 1, 1.5]),
    (Bound(1), [1, 8], [0, -1]),
])
def test_a_bound_admits_what_it_says(bound, inside, outside):
    assert all(bound.admits(v) for v in inside)
    assert not any(bound.admits(v) for v in outside)


def test_bounds_read_as_written():
    assert [str(b) for b in (Bound(0, low_open=True), Bound(0), Bound(0, 1, high_open=True),
                             Bound(0, 1, low_open=True, high_open=True))] == ["> 0", ">= 0", "in [0, 1)", "in (0, 1)"]


def test_every_bounded_dest_is_a_flag_of_that_name_somewhere():
    # a typo in FLAG_BOUNDS would leave a flag unchecked without a word
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices.values()
    flags = {(action.dest, option) for command in commands for action in command._actions
             for option in action.option_strings}
    for dest, (flag, _) in FLAG_BOUNDS.items():
        assert (dest, flag) in flags, (dest, flag)


def test_the_defaults_of_every_command_pass():
    parser = build_parser()
    for argv in (["supernet"], ["search"], ["retrain", "--arch", "a.json"], ["check-ranking"]):
        check_flag_bounds(parser.parse_args(argv))


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
])
def test_a_value_out_of_bounds_is_refused_naming_flag_value_and_bound(argv, message):
    args = build_parser().parse_args(argv)
    with pytest.raises(UserError) as err:
        check_flag_bounds(args)
    assert str(err.value) == message


def test_a_flag_left_unset_is_not_checked():
    check_flag_bounds(argparse.Namespace(ema=None, embed_dim=None, lr=1e-3))


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
