"""The demo form app: a small Tk window where every kind of agent action has a visible, checkable effect.

    python -m demotrace.demo.tkapp [--state-file PATH]

Entries (name, email), a notes Text, a 200-item Listbox (wheel scrolls it), a Canvas with a draggable
rectangle (middle-click recolours it, right-click opens a context menu that Escape closes), Save / Clear
buttons and ctrl+s. A "Sign in" button opens a separate window titled "Sign in" with a user name and a
password entry (shown as bullets), for the recorder's password tests; the app keeps what was typed
there in its state, as a test's ground truth (it is a demo: nothing real is ever typed into it).
The whole state, including each widget's box in root coordinates ("layout"), is written as JSON to
the state file after every change and on exit, so tests and drivers can read both what the app holds
and where to click.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tkinter as tk
from pathlib import Path
from tkinter import font as tkfont
from types import FrameType
from typing import Any

CLASS_NAME = "DemoForm"
TITLE = "demotrace demo form"
GEOMETRY = "900x700+60+60"

LIST_SIZE = 200
LIST_LINES_PER_WHEEL_TICK = 3
CANVAS_SIZE = (400, 300)
ITEM_SIZE = (80, 50)
ITEM_START = (40, 40)
ITEM_COLOURS = ("tomato", "steelblue", "seagreen", "goldenrod")
HISTORY_LIMIT = 50  # histories let a test see states the app passed through, not only the last one
SIGN_IN_TITLE = "Sign in - demotrace demo"
SIGN_IN_GEOMETRY = "380x170+1000+650"  # clear of the form and of the demo xterm
PASSWORD_BULLET = "\u2022"


def list_item_label(index: int) -> str:
    return f"Item {index:03d}"


def _append_changed(history: list[Any], value: Any) -> None:
    if not history or history[-1] != value:
        history.append(value)
        del history[:-HISTORY_LIMIT]


class DemoForm:
    def __init__(self, root: tk.Tk, state_file: Path | None) -> None:
        self.root = root
        # Tk title-cases the main window's class ("Demoform"); a Toplevel keeps the class exactly as given,
        # so the form lives in one and the main window stays withdrawn.
        root.withdraw()
        self.window = tk.Toplevel(root, class_=CLASS_NAME, name=CLASS_NAME.lower())
        self.state_file = state_file
        self.records: list[dict[str, str]] = []
        self.notes_selections: list[str] = []
        self.list_top_history: list[int] = []
        self.focus_history: list[str] = []
        self.last_right_click: dict[str, Any] | None = None
        self.right_clicks = 0
        self.menu_open = False
        self.menu_closes = 0
        self.middle_clicks = 0
        self.drags = 0
        self.status_clicks = 0
        self.colour_index = 0
        self.exit_reason = ""
        self.sign_ins: list[str] = []  # user names submitted from the sign-in window
        self.sign_in_window: tk.Toplevel | None = None
        self._drag_from: tuple[int, int] | None = None
        self._write_scheduled = False

        self.window.title(TITLE)
        self.window.geometry(GEOMETRY)
        self.window.resizable(False, False)
        self.fixed_font = tkfont.nametofont("TkFixedFont")
        self._build_widgets()
        self._bind_events()

    # ----- construction -------------------------------------------------------------------------

    def _build_widgets(self) -> None:
        window = self.window
        self.status = tk.Label(window, text="Ready", anchor="w", relief="groove", padx=8)
        self.status.place(x=10, y=10, width=880, height=30)

        tk.Label(window, text="Name", anchor="w").place(x=10, y=55, width=80, height=26)
        self.name_var = tk.StringVar(window)
        self.name = tk.Entry(window, textvariable=self.name_var)
        self.name.place(x=90, y=55, width=340, height=26)

        tk.Label(window, text="Email", anchor="w").place(x=10, y=95, width=80, height=26)
        self.email_var = tk.StringVar(window)
        self.email = tk.Entry(window, textvariable=self.email_var)
        self.email.place(x=90, y=95, width=340, height=26)

        tk.Label(window, text="Notes", anchor="w").place(x=10, y=135, width=80, height=26)
        # Fixed font, no wrapping, explicit insets: a driver can compute where each character is drawn.
        self.notes = tk.Text(
            window, font=self.fixed_font, wrap="none", borderwidth=1, highlightthickness=1, padx=4, pady=4,
            undo=False, exportselection=True,
        )  # fmt: skip
        self.notes.place(x=10, y=165, width=420, height=160)

        self.save_button = tk.Button(window, text="Save", command=self.save)
        self.save_button.place(x=10, y=340, width=100, height=32)
        self.clear_button = tk.Button(window, text="Clear", command=self.clear)
        self.clear_button.place(x=120, y=340, width=100, height=32)
        self.sign_in_button = tk.Button(window, text="Sign in", command=self.open_sign_in)
        self.sign_in_button.place(x=230, y=340, width=100, height=32)
        self.user_var = tk.StringVar(window)
        self.password_var = tk.StringVar(window)
        for var in (self.user_var, self.password_var):
            var.trace_add("write", lambda *_: self.schedule_write())

        self.records_label = tk.Label(window, text="No saved records", anchor="nw", justify="left")
        self.records_label.place(x=10, y=390, width=420, height=290)

        list_frame = tk.Frame(window)
        list_frame.place(x=460, y=55, width=430, height=300)
        self.list_scrollbar = tk.Scrollbar(list_frame, orient="vertical")
        self.listbox = tk.Listbox(
            list_frame, selectmode="browse", exportselection=False, yscrollcommand=self._on_list_view_changed
        )
        self.list_scrollbar.configure(command=self.listbox.yview)
        self.list_scrollbar.pack(side="right", fill="y")
        self.listbox.pack(side="left", fill="both", expand=True)
        for index in range(LIST_SIZE):
            self.listbox.insert("end", list_item_label(index))

        width, height = CANVAS_SIZE
        # No border or highlight: canvas coordinates then equal pixel offsets from the widget's corner.
        self.canvas = tk.Canvas(window, background="white", borderwidth=0, highlightthickness=0)
        self.canvas.place(x=460, y=375, width=width, height=height)
        x, y = ITEM_START
        item_width, item_height = ITEM_SIZE
        self.item = self.canvas.create_rectangle(
            x, y, x + item_width, y + item_height, fill=ITEM_COLOURS[0], outline="black", tags=("item",)
        )

        self.menu = tk.Menu(window, tearoff=False)
        self.menu.add_command(label="Recolour", command=self.recolour)
        self.menu.add_command(label="Reset position", command=self.reset_item)

    def _bind_events(self) -> None:
        window = self.window
        window.protocol("WM_DELETE_WINDOW", lambda: self.close("WM_DELETE_WINDOW"))
        window.bind_all("<Control-s>", self._on_save_key)
        window.bind_all("<Control-S>", self._on_save_key)
        window.bind("<Configure>", self._on_window_configure)
        window.bind("<Map>", self._on_window_configure)
        window.bind_all("<FocusIn>", self._on_focus_change, add="+")
        window.bind_all("<FocusOut>", self._on_focus_change, add="+")

        for var in (self.name_var, self.email_var):
            var.trace_add("write", lambda *_: self.schedule_write())
        self.notes.bind("<<Modified>>", self._on_notes_modified)
        self.notes.bind("<<Selection>>", self._on_notes_selection)

        # Explicit wheel bindings (X11 sends buttons 4/5) with a fixed step, so a tick count maps to lines.
        self.listbox.bind("<Button-4>", lambda _e: self._scroll_list(-LIST_LINES_PER_WHEEL_TICK))
        self.listbox.bind("<Button-5>", lambda _e: self._scroll_list(LIST_LINES_PER_WHEEL_TICK))
        self.listbox.bind("<<ListboxSelect>>", lambda _e: self.schedule_write())

        self.canvas.tag_bind(self.item, "<ButtonPress-1>", self._on_drag_start)
        self.canvas.bind("<B1-Motion>", self._on_drag_motion)
        self.canvas.bind("<ButtonRelease-1>", self._on_drag_end)
        self.canvas.bind("<ButtonRelease-2>", lambda _e: self._on_middle_click())
        # Posting on release: posting on press would let the same click's release dismiss the menu.
        self.canvas.bind("<ButtonRelease-3>", self._on_right_click)
        self.menu.bind("<Unmap>", self._on_menu_closed)

        self.status.bind("<ButtonRelease-1>", self._on_status_click)

    # ----- behaviour ----------------------------------------------------------------------------

    def fields(self) -> dict[str, str]:
        return {
            "name": self.name_var.get(),
            "email": self.email_var.get(),
            "notes": self.notes.get("1.0", "end-1c"),
        }

    def save(self) -> None:
        self.records.append(self.fields())
        lines = [f"{i + 1}. {r['name']} <{r['email']}>" for i, r in enumerate(self.records[-12:])]
        self.records_label.configure(text="\n".join(lines))
        self.status.configure(text=f"Saved record {len(self.records)}")
        self.schedule_write()

    def clear(self) -> None:
        self.name_var.set("")
        self.email_var.set("")
        self.notes.delete("1.0", "end")
        self.status.configure(text="Cleared")
        self.schedule_write()

    def open_sign_in(self) -> None:
        """Show the sign-in window (built on first use), a top-level window of its own."""
        if self.sign_in_window is None:
            dialog = tk.Toplevel(self.root, class_=CLASS_NAME, name="signin")
            dialog.title(SIGN_IN_TITLE)
            dialog.geometry(SIGN_IN_GEOMETRY)
            dialog.resizable(False, False)
            dialog.protocol("WM_DELETE_WINDOW", self.close_sign_in)
            tk.Label(dialog, text="User name", anchor="w").place(x=10, y=15, width=90, height=26)
            self.user_entry = tk.Entry(dialog, textvariable=self.user_var)
            self.user_entry.place(x=100, y=15, width=260, height=26)
            tk.Label(dialog, text="Password", anchor="w").place(x=10, y=55, width=90, height=26)
            self.password_entry = tk.Entry(dialog, textvariable=self.password_var, show=PASSWORD_BULLET)
            self.password_entry.place(x=100, y=55, width=260, height=26)
            self.sign_in_submit = tk.Button(dialog, text="Sign in", command=self.submit_sign_in)
            self.sign_in_submit.place(x=100, y=100, width=120, height=32)
            dialog.bind("<Map>", lambda _e: self.schedule_write())
            dialog.bind("<Unmap>", lambda _e: self.schedule_write())
            self.sign_in_window = dialog
        else:
            self.sign_in_window.deiconify()
        self.sign_in_window.lift()
        self.status.configure(text="Sign in window open")
        self.schedule_write()

    def submit_sign_in(self) -> None:
        self.sign_ins.append(self.user_var.get())
        self.status.configure(text=f"Signed in as {self.user_var.get()}")
        self.close_sign_in()

    def close_sign_in(self) -> None:
        if self.sign_in_window is not None:
            self.sign_in_window.withdraw()
        self.schedule_write()

    def recolour(self) -> None:
        self.colour_index = (self.colour_index + 1) % len(ITEM_COLOURS)
        self.canvas.itemconfigure(self.item, fill=ITEM_COLOURS[self.colour_index])
        self.schedule_write()

    def reset_item(self) -> None:
        x, y = ITEM_START
        left, top, *_ = self.canvas.coords(self.item)
        self.canvas.move(self.item, x - left, y - top)
        self.schedule_write()

    def _on_save_key(self, _event: tk.Event[tk.Misc]) -> str:
        self.save()
        return "break"

    def _on_window_configure(self, event: tk.Event[tk.Misc]) -> None:
        # Bound on the toplevel, so children's events arrive here too; only the window itself matters.
        if event.widget is self.window:
            self.schedule_write()

    def _on_focus_change(self, _event: tk.Event[tk.Misc]) -> None:
        # Deferred: during FocusOut the new focus is not known yet.
        self.root.after_idle(self._record_focus)

    def _record_focus(self) -> None:
        focused = self.root.focus_get()
        _append_changed(self.focus_history, self._widget_name(focused))
        self.schedule_write()

    def _widget_name(self, widget: tk.Misc | None) -> str:
        if widget is None:
            return ""  # focus is in another application
        names: dict[str, tk.Misc] = {
            "name": self.name, "email": self.email, "notes": self.notes, "list": self.listbox,
            "canvas": self.canvas, "save": self.save_button, "clear": self.clear_button,
            "menu": self.menu, "window": self.window, "sign_in": self.sign_in_button,
        }  # fmt: skip
        if self.sign_in_window is not None:
            names.update({
                "sign_in_window": self.sign_in_window, "sign_in_user": self.user_entry,
                "sign_in_password": self.password_entry, "sign_in_submit": self.sign_in_submit,
            })  # fmt: skip
        for name, candidate in names.items():
            if widget is candidate:
                return name
        return str(widget)

    def _on_notes_modified(self, _event: tk.Event[tk.Misc]) -> None:
        # The flag must be reset, or Tk sends no further <<Modified>> events.
        self.notes.edit_modified(False)
        self.schedule_write()

    def _on_notes_selection(self, _event: tk.Event[tk.Misc]) -> None:
        if self.notes.tag_ranges("sel"):
            _append_changed(self.notes_selections, self.notes.get("sel.first", "sel.last"))
        self.schedule_write()

    def _on_list_view_changed(self, first: float, last: float) -> None:
        self.list_scrollbar.set(first, last)
        _append_changed(self.list_top_history, self.list_top())
        self.schedule_write()

    def list_top(self) -> int:
        return self.listbox.index("@0,0")

    def _scroll_list(self, lines: int) -> str:
        self.listbox.yview_scroll(lines, "units")
        return "break"

    def _on_drag_start(self, event: tk.Event[tk.Misc]) -> None:
        self._drag_from = (event.x, event.y)

    def _on_drag_motion(self, event: tk.Event[tk.Misc]) -> None:
        if self._drag_from is None:
            return
        self.canvas.move(self.item, event.x - self._drag_from[0], event.y - self._drag_from[1])
        self._drag_from = (event.x, event.y)

    def _on_drag_end(self, event: tk.Event[tk.Misc]) -> None:
        if self._drag_from is None:
            return
        self._on_drag_motion(event)
        self._drag_from = None
        self.drags += 1
        self.schedule_write()

    def _on_middle_click(self) -> None:
        self.middle_clicks += 1
        self.recolour()

    def _on_right_click(self, event: tk.Event[tk.Misc]) -> None:
        self.right_clicks += 1
        self.last_right_click = {"x": event.x_root, "y": event.y_root, "widget": "canvas"}
        self.menu_open = True
        self.status.configure(text=f"Context menu at {event.x_root},{event.y_root}")
        self.menu.tk_popup(event.x_root, event.y_root)
        self.schedule_write()

    def _on_menu_closed(self, _event: tk.Event[tk.Misc]) -> None:
        if self.menu_open:
            self.menu_open = False
            self.menu_closes += 1
            self.schedule_write()

    def _on_status_click(self, _event: tk.Event[tk.Misc]) -> None:
        self.status_clicks += 1
        self.status.configure(text=f"Status clicked {self.status_clicks} times")
        self.schedule_write()

    # ----- state --------------------------------------------------------------------------------

    def _box(self, widget: tk.Misc) -> dict[str, int]:
        return {
            "x": widget.winfo_rootx(),
            "y": widget.winfo_rooty(),
            "width": widget.winfo_width(),
            "height": widget.winfo_height(),
        }

    def layout(self) -> dict[str, Any]:
        """Root-coordinate boxes of the widgets, plus what a driver needs to aim inside them."""
        boxes: dict[str, Any] = {
            "window": self._box(self.window),
            "status": self._box(self.status),
            "name": self._box(self.name),
            "email": self._box(self.email),
            "notes": self._box(self.notes),
            "save": self._box(self.save_button),
            "clear": self._box(self.clear_button),
            "sign_in": self._box(self.sign_in_button),
            "list": self._box(self.listbox),
            "canvas": self._box(self.canvas),
        }
        inset_x = sum(
            int(self.notes.cget(option)) for option in ("borderwidth", "highlightthickness", "padx")
        )
        inset_y = sum(
            int(self.notes.cget(option)) for option in ("borderwidth", "highlightthickness", "pady")
        )
        boxes["notes_text"] = {
            "x": boxes["notes"]["x"] + inset_x,
            "y": boxes["notes"]["y"] + inset_y,
            "char_width": self.fixed_font.measure("0"),
            "line_height": self.fixed_font.metrics("linespace"),
        }
        row = self.listbox.bbox(self.list_top())
        boxes["list_row_height"] = row[3] if row else 0
        boxes["list_visible_rows"] = self.listbox.winfo_height() // row[3] if row else 0
        left, top, right, bottom = (round(value) for value in self.canvas.coords(self.item))
        boxes["item"] = {
            "x": boxes["canvas"]["x"] + left,
            "y": boxes["canvas"]["y"] + top,
            "width": right - left,
            "height": bottom - top,
        }
        dialog = self.sign_in_window
        if dialog is not None and dialog.winfo_viewable():
            boxes["sign_in_window"] = self._box(dialog)
            boxes["sign_in_user"] = self._box(self.user_entry)
            boxes["sign_in_password"] = self._box(self.password_entry)
            boxes["sign_in_submit"] = self._box(self.sign_in_submit)
        return boxes

    def _sign_in_open(self) -> bool:
        return self.sign_in_window is not None and bool(self.sign_in_window.winfo_viewable())

    def state(self) -> dict[str, Any]:
        left, top, *_ = (round(value) for value in self.canvas.coords(self.item))
        selection = [index for index in range(LIST_SIZE) if self.listbox.selection_includes(index)]
        state: dict[str, Any] = {
            "fields": self.fields(),
            "notes_selections": self.notes_selections,
            "list": {
                "top": self.list_top(),
                "top_history": self.list_top_history,
                "selection": selection,
                "selected_items": [list_item_label(index) for index in selection],
            },
            "item": {"x": left, "y": top, "colour": ITEM_COLOURS[self.colour_index], "drags": self.drags},
            "middle_clicks": self.middle_clicks,
            "right_clicks": self.right_clicks,
            "last_right_click": self.last_right_click,
            "menu_open": self.menu_open,
            "menu_closes": self.menu_closes,
            "status_clicks": self.status_clicks,
            "records": self.records,
            "focus_history": self.focus_history,
            "sign_in": {
                "open": self._sign_in_open(),
                "user": self.user_var.get(),
                "password": self.password_var.get(),
                "submitted": self.sign_ins,
            },
            "pid": os.getpid(),
            "exit_reason": self.exit_reason,
        }
        if self.window.winfo_viewable():
            state["layout"] = self.layout()
        return state

    def schedule_write(self) -> None:
        # Coalesce bursts of changes (a drag, a typed word) into one write once Tk is idle.
        if self.state_file is not None and not self._write_scheduled:
            self._write_scheduled = True
            self.root.after_idle(self.write_state)

    def write_state(self) -> None:
        self._write_scheduled = False
        if self.state_file is None:
            return
        # Written whole then renamed: a reader never sees half a file.
        partial = self.state_file.with_name(self.state_file.name + ".partial")
        partial.write_text(json.dumps(self.state(), indent=1))
        os.replace(partial, self.state_file)

    def close(self, reason: str) -> None:
        self.exit_reason = reason
        self.write_state()
        self.root.destroy()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="demotrace demo form (Tk)")
    parser.add_argument("--state-file", type=Path, default=None, help="JSON file the app keeps its state in")
    args = parser.parse_args(argv)

    root = tk.Tk(className=CLASS_NAME)
    form = DemoForm(root, args.state_file)

    def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
        form.close("SIGTERM")

    # Python runs this between Tk events: tkinter's main loop checks for signals while it waits.
    signal.signal(signal.SIGTERM, on_sigterm)
    form.write_state()
    root.mainloop()


if __name__ == "__main__":
    main()
