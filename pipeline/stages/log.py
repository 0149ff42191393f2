"""`data/logs/<stage>.log`: everything a stage prints, progress bars thinned to one line every few seconds."""
from __future__ import annotations

import io as _io
import sys
import time


class StageLog:
    """Tees stdout and stderr to `data/logs/<stage>.log` (rank N > 0: `<stage>.rankN.log`).

    A progress bar redraws its line with carriage returns; the log keeps one
    line per redraw at most every `every` seconds, and the last one."""

    def __init__(self, stage: str, every: float = 10.0):
        self.stage, self.every, self.file = stage, every, None
        self.streams = (sys.stdout, sys.stderr)

    def open(self, rank: int) -> None:
        from ..artifacts import LOGS

        try:
            LOGS.mkdir(parents=True, exist_ok=True)
            path = LOGS / (f"{self.stage}.log" if rank == 0 else f"{self.stage}.rank{rank}.log")
            if path.exists():   # the last run's log (an interrupted run's error, say) stays readable beside it
                path.replace(path.with_name(path.stem + ".previous.log"))
            # A file name that is not UTF-8 (kept by Python as surrogates) is written escaped, never a crash.
            self.file = open(path, "w", encoding="utf-8", errors="backslashreplace", buffering=1)
        except OSError as e:   # a log we cannot write must not stop the stage
            print(f"warning: no log file ({e})", file=sys.__stderr__)
            return
        self.pending, self.last = "", float("-inf")
        sys.stdout, sys.stderr = (_Tee(s, self) for s in self.streams)

    def note(self, text: str) -> None:
        if self.file is not None:
            self.write(f"# {text}\n")

    def write(self, text: str) -> None:
        """Whole lines go straight to the file; a line redrawn with \\r is kept as its latest state. A log
        that cannot be written (a full disk) stops logging; it never stops the stage or hides its error."""
        if self.file is None:
            return
        try:
            self._write(text)
        except OSError:
            self.file = None

    def _write(self, text: str) -> None:
        *done, self.pending = (self.pending + text).split("\n")
        for line in done:
            self.file.write(line.rsplit("\r", 1)[-1] + "\n")
        if "\r" in self.pending:
            self.pending = self.pending.rsplit("\r", 1)[-1]   # the bar's latest state
            if self.pending.strip():
                now = time.time()
                if now - self.last >= self.every:
                    self.file.write(self.pending + "\n")
                    self.last = now

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        sys.stdout, sys.stderr = self.streams
        if self.file is not None:
            file = self.file
            try:
                if self.pending.strip():
                    file.write(self.pending.rsplit("\r", 1)[-1] + "\n")
                if kind is not None and not issubclass(kind, SystemExit):   # a bug: its traceback belongs in the log
                    import traceback

                    file.write("".join(traceback.format_exception(kind, error, trace)))
                file.close()
            except OSError:   # a full disk: the stage's own line has reached the terminal already
                pass
        return False


class _Tee(_io.TextIOBase):
    def __init__(self, stream, log: StageLog):
        self.stream, self.log = stream, log

    def write(self, text: str) -> int:
        try:
            self.stream.write(text)
        except UnicodeEncodeError:   # e.g. a file name that is not UTF-8, on a strict stdout
            encoding = self.encoding or "utf-8"
            self.stream.write(text.encode(encoding, "backslashreplace").decode(encoding))
        self.log.write(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:   # tqdm and colour decisions see the terminal, not the log
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self):
        return getattr(self.stream, "encoding", "utf-8")
