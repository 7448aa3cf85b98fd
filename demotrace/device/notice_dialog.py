"""The notice as a window: what the tray opens at first run (and from its menu) for the person to read
and accept. ``python -m demotrace.device.notice_dialog [--socket PATH]`` asks the running recorder for
the notice of the policy in force, shows it, and accepts exactly that notice (its digest) on "Accept".

Its own process: Tk then owns its main thread, and the tray's loop is never held up by a dialog.
Exit codes: 0 accepted, 1 not now (closed or "Not now"), 2 no recorder or the recorder refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

WINDOW_TITLE = "demotrace: recording notice"


def ask_accept_with_tk(text: str, digest: str) -> bool:
    """Show the notice; True when the person presses Accept."""
    import tkinter
    from tkinter import ttk

    root = tkinter.Tk(className="demotrace-notice")
    root.title(WINDOW_TITLE)
    answer = [False]

    def accept() -> None:
        answer[0] = True
        root.destroy()

    frame = ttk.Frame(root, padding=16)
    frame.grid(sticky="nsew")
    root.columnconfigure(0, weight=1)
    root.rowconfigure(0, weight=1)
    ttk.Label(
        frame,
        text="Before anything is recorded on this computer, please read what is captured and your rights.",
        font=("TkDefaultFont", 11, "bold"),
        wraplength=640,
    ).grid(row=0, column=0, columnspan=4, sticky="w", pady=(0, 8))
    lines = text.count("\n") + 1
    body = tkinter.Text(
        frame, width=92, height=min(lines + 1, 34), wrap="word", relief="flat", padx=8, pady=8
    )
    body.insert("1.0", text)
    body.configure(state="disabled")
    body.grid(row=1, column=0, columnspan=3, sticky="nsew")
    scroll = ttk.Scrollbar(frame, orient="vertical", command=body.yview)
    scroll.grid(row=1, column=3, sticky="ns")
    body.configure(yscrollcommand=scroll.set)
    frame.columnconfigure(0, weight=1)
    frame.rowconfigure(1, weight=1)
    ttk.Label(frame, text=f"notice {digest}", foreground="#666666").grid(
        row=2, column=0, sticky="w", pady=(8, 0)
    )
    ttk.Button(frame, text="Not now", command=root.destroy).grid(
        row=2, column=1, sticky="e", padx=8, pady=(8, 0)
    )
    accept_button = ttk.Button(frame, text="Accept", command=accept)
    accept_button.grid(row=2, column=2, sticky="e", pady=(8, 0))
    accept_button.focus_set()
    root.mainloop()
    return answer[0]


def main(argv: list[str] | None = None) -> int:
    from demotrace.device.control_client import ControlClient
    from demotrace.device.control_protocol import ControlError

    parser = argparse.ArgumentParser(prog="python -m demotrace.device.notice_dialog")
    parser.add_argument("--socket", type=Path, default=None, help="the recorder's control socket")
    args = parser.parse_args(argv)
    client = ControlClient(args.socket)
    try:
        shown = client.request("notice")
        if not shown.get("ok"):
            print(f"demotrace: {shown.get('error')}", file=sys.stderr)
            return 2
        if not ask_accept_with_tk(shown["text"], shown["digest"]):
            return 1
        answer = client.request("accept_notice", digest=shown["digest"])
    except ControlError as error:
        print(f"demotrace: {error}", file=sys.stderr)
        return 2
    if not answer.get("ok"):
        print(f"demotrace: {answer.get('error')}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
