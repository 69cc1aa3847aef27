"""What every benchmark script shares: its outputs (summary JSON + rows CSV) and its exit on bad input."""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from nas.errors import USER_ERRORS
from nas.report import write_csv_atomic
from searchspace import write_json_atomic


def write_rows(out_dir: str | Path, stem: str, summary: dict, rows: list[dict]) -> Path:
    """``<out_dir>/<stem>.json`` ({summary, rows}) and ``<stem>.csv`` (the rows), both atomic; returns the stem path."""
    path = Path(out_dir) / stem
    write_json_atomic(path.with_name(f"{stem}.json"), {"summary": summary, "rows": rows})
    write_csv_atomic(path.with_name(f"{stem}.csv"), rows)
    return path


def run(main: Callable[[], int]) -> None:
    """Exit with ``main()``'s code; bad input (a user error) is one line and exit code 2, as in launch.py."""
    try:
        sys.exit(main())
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
