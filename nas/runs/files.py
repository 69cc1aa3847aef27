"""CSV files of a run, written atomically (a crash leaves the previous file)."""
from __future__ import annotations

import csv
import io
import os
from typing import Sequence

from searchspace import atomic_path


def write_csv_atomic(path: str | os.PathLike, rows: Sequence[dict], fields: Sequence[str] | None = None) -> None:
    """Rows as CSV; the columns are ``fields`` (other keys dropped) or every key in order of appearance."""
    if fields is None:
        fields = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())
