"""Ingest progress in files: a bar with a total and an ETA, or one-line logs for non-terminals.

The unit is the file, not the item: the number of files is known once the folder is walked
(``jina_vdb.sources.count_files``), while a file's chunks or pages are only known once it
is read. A file counts as done when every item read from it has been written, skipped or
reported, so the bar never runs ahead of the store. Not thread-safe on its own: ``Tally``
calls it with its lock held.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ._deps import require

#: Where the one-line progress logs go (the CLI shows this logger at INFO when stderr is not
#: a terminal).
progress_logger = logging.getLogger("jina_vdb.progress")


class FileProgress:
    """Counts files done out of ``total``; drives a tqdm bar and/or periodic log lines.

    Args:
        total: files to ingest (None: unknown, the bar then shows a running count).
        bar: show a tqdm bar.
        log_every: seconds between progress log lines (None: no logs; 0: one per file).
    """

    def __init__(self, total: int | None, *, bar: bool, log_every: float | None) -> None:
        self.total, self.log_every = total, log_every
        self.files_done = 0
        self._logged_done = -1  # files_done at the last log line (no line twice)
        self._open: dict[int, int] = {}  # file number -> items read but not yet done
        self._closed: set[int] = set()  # files the reader has finished reading
        self._started = self._logged = time.perf_counter()
        self._bar: Any = None
        if bar:
            tqdm = require("tqdm.auto", "for the progress bar").tqdm

            self._bar = tqdm(total=total, unit="file", desc="ingest", dynamic_ncols=True)

    def expect(self, file_no: int) -> None:
        """The reader met one more item (or failure / ignored entry) of file ``file_no``."""
        self._open[file_no] = self._open.get(file_no, 0) + 1

    def close(self, file_no: int) -> bool:
        """The reader is done with file ``file_no``; True when that completes it."""
        self._closed.add(file_no)
        return self._complete_if_done(file_no)

    def done(self, file_no: int) -> bool:
        """One item of ``file_no`` is done; True when that completes the file."""
        self._open[file_no] -= 1
        return self._complete_if_done(file_no)

    def _complete_if_done(self, file_no: int) -> bool:
        if self._open.get(file_no, 0) > 0 or file_no not in self._closed:
            return False
        self._open.pop(file_no, None)
        self._closed.discard(file_no)
        self.files_done += 1
        if self._bar is not None:
            self._bar.update(1)
        return True

    def show(self, counts: str, rates: str) -> None:
        """Refresh the bar's postfix, and log a line when ``log_every`` seconds have passed."""
        if self._bar is not None:
            self._bar.set_postfix_str(f"{counts}; {rates}", refresh=False)
        now = time.perf_counter()
        if self.log_every is None or now - self._logged < self.log_every:
            return
        if self.files_done == self._logged_done:
            return
        self._logged, self._logged_done = now, self.files_done
        progress_logger.info("ingest: %s; %s; %s", self._files_line(now), counts, rates)

    def status(self, what: str, seconds: float | None) -> None:
        """The store pauses the writes for ``what`` (seconds None) or has finished (its time):
        the bar says so while it lasts, and the progress logs get a line at each end."""
        if self._bar is not None:
            self._bar.set_description_str("ingest" if seconds is not None else f"ingest ({what})")
            self._bar.refresh()
        if self.log_every is not None:
            files = self._files_line(time.perf_counter())
            if seconds is None:
                progress_logger.info("ingest: %s; %s ...", files, what)
            else:
                progress_logger.info("ingest: %s; %s done in %.1fs", files, what, seconds)

    def _files_line(self, now: float) -> str:
        if not self.total:
            return f"{self.files_done} files done"
        share = self.files_done / self.total
        line = f"{self.files_done}/{self.total} files ({share:.0%})"
        if 0 < self.files_done < self.total:
            left = (now - self._started) / self.files_done * (self.total - self.files_done)
            line += f", ETA {time.strftime('%H:%M:%S', time.gmtime(left))}"
        return line

    def close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
