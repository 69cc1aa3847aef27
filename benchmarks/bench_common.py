"""What every benchmark script shares: its outputs (summary JSON + rows CSV) and its exit on bad input."""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from nas.errors import USER_ERRORS, UserError
from nas.runs.files import write_csv_atomic
from searchspace import write_json_atomic


def write_rows(out_dir: str | Path, stem: str, summary: dict, rows: list[dict]) -> Path:
    """``<out_dir>/<stem>.json`` ({summary, rows}) and ``<stem>.csv`` (the rows), both atomic; returns the stem path."""
    path = Path(out_dir) / stem
    write_json_atomic(path.with_name(f"{stem}.json"), {"summary": summary, "rows": rows})
    write_csv_atomic(path.with_name(f"{stem}.csv"), rows)
    return path


def reference_checkout(path: str, this: Path) -> dict[str, Path]:
    """``{"this": this, "reference": path}`` for a side-by-side benchmark; a folder without launch.py is a user error."""
    reference = Path(path).resolve()
    if not (reference / "launch.py").exists():
        raise UserError(f"{reference}: no launch.py (expected a checkout of the reference commit)")
    return {"this": this, "reference": reference}


def checkout_order(round_index: int) -> tuple[str, str]:
    """Which checkout runs first in a round: alternating, so neither always meets the warmer (or busier) machine."""
    return ("this", "reference") if round_index % 2 == 0 else ("reference", "this")


def run(main: Callable[[], int]) -> None:
    """Exit with ``main()``'s code; bad input (a user error) is one line and exit code 2, as in launch.py."""
    try:
        sys.exit(main())
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
