import pytest

from searchspace import SpaceError, parse_flops, parse_latency


@pytest.mark.parametrize("text", ["4.5GFLOPs", "4.5G", "4500MFLOPs", "4.5e9", "4.5 GFLOPs", "4500M", "4.5Gflops"])
def test_budget_strings_parse(text):
    assert parse_flops(text) == pytest.approx(4.5e9)


@pytest.mark.parametrize("text", ["", "abc", "4.5GB", "-1G", "0", "G", "4.5 G FLOPs x", "nan", "inf"])
def test_bad_budget_strings_are_clear_errors(text):
    with pytest.raises(SpaceError, match="expected a positive FLOP count such as 4.5GFLOPs"):
        parse_flops(text)


@pytest.mark.parametrize("text, seconds", [("25ms", 0.025), ("0.025s", 0.025), ("25000us", 0.025), ("1e1ms", 0.01)])
def test_latency_strings(text, seconds):
    assert parse_latency(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["25", "25 min", "-3ms", "ms"])
def test_bad_latency_strings(text):
    with pytest.raises(SpaceError, match="latency budget"):
        parse_latency(text)
