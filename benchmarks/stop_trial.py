"""Stop a `beam-seg segment` run with a signal once it has made some progress, and say how
it ended (docs/signals.md): exit code, seconds from the signal to the exit, what it kept.

    python benchmarks/stop_trial.py --after-done 200 SIGINT -- STILLS --output OUT [options]
    python benchmarks/stop_trial.py --after-segments 2 SIGTERM --launcher-only -- CLIP --output OUT

The run starts in a session of its own (as a shell job does), so SIGINT goes to its whole
process group, as Ctrl-C in a terminal does, unless --launcher-only.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("signal", choices=["SIGINT", "SIGTERM"])
    progress = parser.add_mutually_exclusive_group(required=True)
    progress.add_argument("--after-done", type=int, help="signal once OUT/_done holds N markers")
    progress.add_argument("--after-segments", type=int, help="signal once N video segments are kept")
    parser.add_argument("--launcher-only", action="store_true", help="signal the launcher, not its group")
    parser.add_argument("--ignore-sigint", action="store_true", help="start the run with SIGINT ignored")
    parser.add_argument("segment_args", nargs=argparse.REMAINDER, help="-- then `beam-seg segment` arguments")
    args = parser.parse_args()
    seg_args = [a for a in args.segment_args if a != "--"]
    out = Path(seg_args[seg_args.index("--output") + 1])
    pattern = "_done/*.json" if args.after_done is not None else "_work/*/segment-*.json"
    wanted = args.after_done if args.after_done is not None else args.after_segments
    sigint = signal.SIG_IGN if args.ignore_sigint else signal.SIG_DFL
    proc = subprocess.Popen([sys.executable, "-m", "beam_seg.cli", "segment", *seg_args],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))
    while len(list(out.glob(pattern))) < wanted and proc.poll() is None:
        time.sleep(0.05)
    kept_before = len(list(out.glob(pattern)))
    sent = time.monotonic()
    (os.kill if args.launcher_only else os.killpg)(proc.pid, getattr(signal, args.signal))
    _, err = proc.communicate()
    took = time.monotonic() - sent
    print(f"{kept_before} kept when signalled; exit {proc.returncode} {took:.1f} s after the signal; "
          f"{len(list(out.glob(pattern)))} kept; lock left: {(out / '_lock.json').exists()}")
    print("\n".join(line for line in err.splitlines() if "interrupted" in line or "terminate" in line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
