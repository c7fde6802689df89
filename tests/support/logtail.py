"""Reading a server's log as it grows: only what was appended since the last read (logs get long)."""

from __future__ import annotations

from pathlib import Path


class LogTail:
    """The complete lines appended to a log file since the previous call; a partial last line waits."""

    def __init__(self, path: Path):
        self.path = path
        self._offset = 0
        self._rest = b""

    def new_lines(self) -> list[str]:
        with open(self.path, "rb") as fh:
            fh.seek(self._offset)
            chunk = fh.read()
        self._offset += len(chunk)
        *complete, self._rest = (self._rest + chunk).split(b"\n")
        return [raw.decode("utf-8", errors="replace") for raw in complete]
