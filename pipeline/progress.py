"""Progress bars that suit where they are drawn."""
from __future__ import annotations

import os
import sys

from tqdm import tqdm

# In a terminal a bar redraws in place, ten times a second (tqdm's default). Into a file or a pipe
# (`dvc repro > run.log`) every redraw is another line: 17 for a 2-second micro Stage-1, one per step
# (780) for the default's. There a line every 30 s says as much.
FILE_INTERVAL = 30.0


def bar(iterable=None, **kwargs) -> tqdm:
    """`tqdm(iterable, **kwargs)`, redrawn at most every FILE_INTERVAL seconds when stderr is not a terminal
    (a `mininterval` passed, or TQDM_MININTERVAL in the environment, wins)."""
    if "TQDM_MININTERVAL" not in os.environ and not sys.stderr.isatty():
        kwargs.setdefault("mininterval", FILE_INTERVAL)
        kwargs.setdefault("maxinterval", FILE_INTERVAL)   # else tqdm's monitor redraws a stalled bar every 10 s
    return tqdm(iterable, **kwargs)
