"""Arguments and helpers shared by several subcommands."""
from __future__ import annotations

import argparse

from searchspace import SearchSpace


def add_space_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--space", metavar="FILE", default=None,
                        help="a search-space JSON file (default: the built-in space)")


def load_space(path: str | None) -> SearchSpace:
    return SearchSpace.default() if path is None else SearchSpace.from_file(path)
