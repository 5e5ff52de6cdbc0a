"""What the host samplers beside a benchmark share (scripts/diskstats.py, scripts/pressure.py):
their common flags, a stop on SIGINT/SIGTERM, and UTC times to set beside floe's warnings."""

import argparse
import datetime
import signal


def parser(doc):
    """An argument parser described by `doc`'s first line, with --every-ms and --seconds."""
    arguments = argparse.ArgumentParser(description=doc.splitlines()[0])
    arguments.add_argument("--every-ms", type=float, default=5.0)
    arguments.add_argument("--seconds", type=float, default=0.0, help="0: until interrupted")
    return arguments


def stopping():
    """A list that becomes non-empty once SIGINT or SIGTERM arrives."""
    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(True))
    return stop


def utc(wall):
    """`wall` (seconds since the epoch) as HH:MM:SS.mmm in UTC."""
    moment = datetime.datetime.fromtimestamp(wall, datetime.timezone.utc)
    return moment.strftime("%H:%M:%S.%f")[:-3]
