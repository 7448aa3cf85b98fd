"""The recorder a user would otherwise pick: ffmpeg x11grab H.264 at 30 fps plus a JSONL input log.

That is what OBS-based recorders do. Both run as real processes on the same display; `record.py` runs
the same scripted session under them and under demotrace, and prints our figures as ratios to these.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# A line per input event, flushed at once: the way simple loggers write (and why they wake so often).
INPUT_LOGGER = """
import json, sys, time
from pynput import keyboard, mouse
out = open(sys.argv[1], "w", buffering=1)
def log(kind, **fields):
    out.write(json.dumps({"t": time.time(), "type": kind, **fields}) + "\\n")
mouse.Listener(
    on_move=lambda x, y, *_: log("move", x=x, y=y),
    on_click=lambda x, y, b, p, *_: log("click", x=x, y=y, button=str(b), down=p),
    on_scroll=lambda x, y, dx, dy, *_: log("scroll", x=x, y=y, dx=dx, dy=dy),
).start()
with keyboard.Listener(
    on_press=lambda k, *_: log("key", key=str(k), down=True),
    on_release=lambda k, *_: log("key", key=str(k), down=False),
) as listener:
    print("recording", file=sys.stderr, flush=True)
    listener.join()
"""


@dataclass
class BaselineRecorder:
    display: str
    work: Path
    width: int = 1920
    height: int = 1080
    fps: int = 30

    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.video = self.work / "screen.mp4"
        self.input_log = self.work / "input.jsonl"
        env = {**os.environ, "DISPLAY": self.display}
        self.ffmpeg = subprocess.Popen(
            [
                "ffmpeg",
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "x11grab",
                "-framerate",
                str(self.fps),
                "-video_size",
                f"{self.width}x{self.height}",
                "-i",
                f"{self.display}+0,0",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-crf",
                "23",
                "-pix_fmt",
                "yuv420p",
                str(self.video),
            ],
            stdin=subprocess.PIPE,
            env=env,
        )
        self.logger = subprocess.Popen(
            [sys.executable, "-c", INPUT_LOGGER, str(self.input_log)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.logger.stderr is not None
        self.logger.stderr.readline()  # "recording": the listeners are up

    @property
    def pids(self) -> list[int]:
        return [self.ffmpeg.pid, self.logger.pid]

    def stop(self) -> None:
        # 'q' lets ffmpeg finish the file cleanly, as a user stopping OBS would.
        assert self.ffmpeg.stdin is not None
        self.ffmpeg.stdin.write(b"q")
        self.ffmpeg.stdin.close()
        self.ffmpeg.wait(timeout=60)
        self.logger.send_signal(signal.SIGTERM)
        self.logger.wait(timeout=10)

    def bytes_written(self) -> int:
        return sum(path.stat().st_size for path in (self.video, self.input_log) if path.exists())
