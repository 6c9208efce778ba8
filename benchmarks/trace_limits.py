"""How fast, and in how little memory, every command refuses a hostile 200 MB trace (issue 13).

Goal: each refusal in under 2 s of wall time and under 200 MB peak RSS, exit status 2, a
message naming the file and the row, no traceback. Writes the hostile files into a temporary
folder, runs ``prewarm backtest``, ``prewarm forecast-eval`` and ``prewarm demo`` on each in its
own process (the console script of this interpreter's environment, as a user runs it) and
prints a Markdown table: the seconds ``read_trace`` itself takes (in this process), then per
command the wall seconds, peak RSS of that process (``os.wait4``), exit status and the last line
of stderr. The first row, a missing file, is the commands' start-up alone::

    .venv/bin/python benchmarks/trace_limits.py
    .venv/bin/python benchmarks/trace_limits.py --mb 50 --only backtest

The files (removed at the end unless ``--keep DIR``):

- ``one-line``: a valid header, then one line of digits and commas and no newline.
- ``garbage``: lines of random printable words after a valid header.
- ``binary``: random bytes (not UTF-8).
- ``latin1``: valid rows whose second line carries a Latin-1 byte, then more rows.
- ``gzip-bomb``: a small .gz whose content is one line of zeros of the full size.
- ``long-valid``: valid, increasing one-second rows until the file has the full size; it stops
  at the value limit (``forecasting.traces.MAX_VALUES``), so it shows the slowest refusal: the
  reader must parse that many rows first.
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = b"timestamp_utc,requests,prompt_tokens,output_tokens\n"
CHUNK = 1 << 20
COMMANDS = {
    "backtest": ["backtest", "--no-progress", "--trace"],
    "forecast-eval": ["forecast-eval", "--no-progress", "--trace"],
    "demo": ["demo", "--no-live", "--no-backtest", "--trace"],
}


def prewarm() -> list[str]:
    """The ``prewarm`` console script of this interpreter's environment (or its entry point)."""
    script = Path(sys.executable).with_name("prewarm")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from scaler.cli import main; raise SystemExit(main())"]


def _fill(path: Path, size: int, head: bytes, chunk: Callable[[], bytes]) -> None:
    with path.open("wb") as out:
        out.write(head)
        written = len(head)
        while written < size:
            block = chunk()[: size - written]
            out.write(block)
            written += len(block)


def _garbage_chunk(rng: random.Random) -> Callable[[], bytes]:
    words = [b"lorem", b"ipsum", b"dolor", b"sit", b"amet", b"42", b"-", b"0x1f"]
    block = b" ".join(rng.choice(words) for _ in range(CHUNK // 5)).replace(b"amet", b"amet\n")
    return lambda: block


def _valid_rows() -> Callable[[], bytes]:
    """One-second rows with ISO timestamps, 40,000 at a time, continuing where the last ended."""
    import numpy as np

    first = [0]

    def chunk() -> bytes:
        seconds = np.arange(first[0], first[0] + 40_000).astype("datetime64[s]")
        first[0] += 40_000
        return "".join(f"{s}Z,5,1,1\n" for s in np.datetime_as_string(seconds)).encode()

    return chunk


def write_files(folder: Path, size: int) -> dict[str, Path]:
    """The hostile files, each ``size`` bytes (the gzip bomb: ``size`` bytes once unpacked)."""
    rng = random.Random(0)
    files = {name: folder / f"{name}.csv" for name in
             ("one-line", "garbage", "binary", "latin1", "long-valid")}
    _fill(files["one-line"], size, HEADER, lambda: b"1234567," * (CHUNK // 8))
    _fill(files["garbage"], size, HEADER, _garbage_chunk(rng))
    _fill(files["binary"], size, b"", lambda: rng.randbytes(CHUNK))
    rows = b"1970-01-01T00:00:00Z,5,,\n1970-01-01T00:01:00Z,5,,caf\xe9\n"
    _fill(files["latin1"], size, HEADER + rows, lambda: b"1970-01-01T00:02:00Z,5,,\n" * 40_000)
    _fill(files["long-valid"], size, HEADER, _valid_rows())
    bomb = folder / "gzip-bomb.csv.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as out:
        out.write(HEADER)
        zeros = b"0" * CHUNK
        for _ in range(size // CHUNK):
            out.write(zeros)
    files["gzip-bomb"] = bomb
    return files


def measure(argv: list[str]) -> tuple[float, float, int, str]:
    """Wall seconds, peak RSS (MB) of this one process, exit status and stderr's last line."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    last = err.strip().splitlines()[-1] if err.strip() else ""
    return wall, usage.ru_maxrss / 1024, proc.returncode, last


def read_seconds(path: Path) -> float:
    """Seconds :func:`read_trace` takes to refuse ``path`` in this process (no start-up)."""
    from forecasting.traces import TraceError, read_trace

    started = time.perf_counter()
    try:
        read_trace(path)
    except TraceError:
        return time.perf_counter() - started
    raise AssertionError(f"{path}: read without error")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=200, help="size of each hostile file (200)")
    parser.add_argument("--only", choices=sorted(COMMANDS), help="one command instead of all")
    parser.add_argument("--keep", metavar="DIR", help="write the files here and keep them")
    args = parser.parse_args(argv)
    commands = [args.only] if args.only else list(COMMANDS)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        files = {"(missing: start-up only)": folder / "absent.csv",
                 **write_files(folder, args.mb * CHUNK)}
        print("| file | read_trace s | command | wall s | peak RSS MB | exit | message |")
        print("|---|---|---|---|---|---|---|")
        for name, path in files.items():
            read = read_seconds(path)
            for command in commands:
                wall, rss, code, last = measure([*prewarm(), *COMMANDS[command], str(path)])
                shown = last.replace(str(folder), "$TMP").replace("|", "\\|")[:150]
                print(f"| {name} | {read:.3f} | {command} | {wall:.2f} | {rss:.0f} | {code} | "
                      f"{shown} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
