"""``python -m demotrace.device.bare_recorder``: a bare recorder process into a spool (tests, debugging).

No uploader, no control socket, no screen scrub: a recorder, the policy it is given, and a spool.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from demotrace.capture.recorder import record_until_signal
from demotrace.device.spool import open_spool
from demotrace.policy import CaptureGate, PolicyError, load_policy


def main(argv: list[str] | None = None) -> int:
    """``python -m demotrace.device.bare_recorder``: a bare recorder process (tests, debugging)."""
    parser = argparse.ArgumentParser(prog="python -m demotrace.device.bare_recorder")
    parser.add_argument("--spool", type=Path, required=True)
    parser.add_argument("--key-file", type=Path, default=None)
    parser.add_argument("--device-id", default="local")
    parser.add_argument("--display", default=None)
    parser.add_argument("--batch-seconds", type=float, default=1.0)
    parser.add_argument("--policy", type=Path, default=None, help="capture policy (TOML); default: local")
    parser.add_argument(
        "--accept-notice",
        action="store_true",
        help="the notice counts as accepted (tests); without it nothing is captured",
    )
    args = parser.parse_args(argv)
    try:
        policy = load_policy(args.policy)
    except PolicyError as failure:
        print(f"demotrace: {failure}", file=sys.stderr)
        return 2
    spool = open_spool(args.spool, args.key_file)
    try:
        return record_until_signal(
            spool,
            args.device_id,
            display=args.display,
            batch_seconds=args.batch_seconds,
            on_started=lambda: print("recording", flush=True),
            gate=CaptureGate(policy, notice_accepted=args.accept_notice),
        )
    finally:
        spool.close()


if __name__ == "__main__":
    sys.exit(main())
