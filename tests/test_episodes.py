"""split_episodes: where one trajectory ends and the next begins, and what it is called."""

from __future__ import annotations

from demotrace.dataset.episodes import describe_actions, split_episodes
from demotrace.model import Action, Event, Marker, Monitor, SessionHeader, Window

WALL0 = 1_700_000_000.0
HEADER = SessionHeader(
    session_id="sess",
    device_id="dev",
    platform="x11",
    screen_width=1920,
    screen_height=1080,
    monitors=[Monitor(left=0, top=0, width=1920, height=1080)],
    double_click_ms=400,
    double_click_px=4,
    t=0.0,
    wall=WALL0,
)


def window(app: str, title: str) -> Window:
    return Window(t=0.0, wall=WALL0, app=app, title=title, pid=1, x=0, y=0, width=10, height=10)


def click_at(t: float, app: str = "XTerm", title: str = "bash") -> Action:
    return Action(kind="click", t=t, t_end=t + 0.05, wall=WALL0 + t, x=1, y=1, window=window(app, title))


def marker(t: float, kind: str, text: str = "") -> Marker:
    return Marker(t=t, wall=WALL0 + t, kind=kind, text=text)


def split(events: list[Event], actions: list[Action], idle_gap: float = 60.0) -> list[list[float]]:
    return [[a.t for a in e.actions] for e in split_episodes("sess", HEADER, events, actions, idle_gap)]


def test_idle_gap_longer_than_the_limit_splits() -> None:
    actions = [click_at(1.0), click_at(30.0), click_at(100.0), click_at(101.0)]
    assert split([], actions) == [[1.0, 30.0], [100.0, 101.0]]
    assert split([], actions, idle_gap=200.0) == [[1.0, 30.0, 100.0, 101.0]]


def test_task_markers_bound_episodes_and_name_them() -> None:
    events: list[Event] = [marker(5.0, "task_start", "Save the form"), marker(9.0, "task_end")]
    actions = [click_at(1.0), click_at(5.0), click_at(8.0), click_at(10.0)]
    episodes = split_episodes("sess", HEADER, events, actions)
    assert [[a.t for a in e.actions] for e in episodes] == [[1.0], [5.0, 8.0], [10.0]]
    assert episodes[1].instruction == "Save the form"
    assert episodes[1].instruction_source == "marker"
    assert [e.end_reason for e in episodes] == ["task_start", "task_end", "end_of_session"]


def test_idle_gap_inside_a_marked_task_does_not_split_it() -> None:
    events: list[Event] = [marker(0.5, "task_start", "Read and reply"), marker(300.0, "task_end")]
    actions = [click_at(1.0), click_at(200.0), click_at(400.0)]
    assert split(events, actions) == [[1.0, 200.0], [400.0]]


def test_span_not_captured_ends_an_unmarked_episode() -> None:
    events: list[Event] = [marker(3.0, "not_captured")]
    episodes = split_episodes("sess", HEADER, events, [click_at(1.0), click_at(4.0)])
    assert [(len(e.actions), e.end_reason, e.gaps) for e in episodes] == [
        (1, "interrupted", []),
        (1, "end_of_session", []),
    ]


def test_a_marked_task_spans_a_visit_to_a_denied_window() -> None:
    # "list files": 5 steps, a look at the password manager (denied), 4 more steps, then task_end.
    events: list[Event] = [
        marker(0.5, "task_start", "list files"),
        Marker(t=5.5, wall=WALL0 + 5.5, kind="not_captured", text="window not allowed", duration=12.0),
        marker(30.0, "task_end"),
    ]
    actions = [click_at(float(t)) for t in (1, 2, 3, 4, 5, 18, 19, 20, 21)]
    (episode,) = split_episodes("sess", HEADER, events, actions)
    assert (episode.instruction, episode.end_reason, len(episode.actions)) == ("list files", "task_end", 9)
    assert [(gap.before_step, gap.seconds, gap.reason) for gap in episode.gaps] == [
        (5, 12.0, "window not allowed")
    ]
    stopped = [marker(0.5, "task_start", "list files"), marker(5.5, "stop")]
    assert [e.end_reason for e in split_episodes("sess", HEADER, stopped, actions)] == [
        "interrupted",  # the recorder stopping still ends a task
        "end_of_session",
    ]


def test_episodes_without_actions_are_dropped_and_ids_count_kept_episodes() -> None:
    events: list[Event] = [
        marker(1.0, "task_start", "empty"),
        marker(2.0, "task_end"),
        marker(3.0, "task_start", "real"),
    ]
    episodes = split_episodes("sess", HEADER, events, [click_at(0.5), click_at(4.0)])
    assert [e.task_id for e in episodes] == ["sess-0000", "sess-0001"]
    assert episodes[1].instruction == "real"


def test_generated_instruction_names_apps_and_titles_deterministically() -> None:
    actions = [
        click_at(1.0, "XTerm", "bash"),
        click_at(2.0, "Tk", "Demo Form"),
        click_at(3.0, "XTerm", "vim"),
    ]
    assert describe_actions(actions) == 'Work in XTerm ("bash") and Tk ("Demo Form"): 3 steps'
    episodes = split_episodes("sess", HEADER, [], actions)
    assert episodes[0].instruction == describe_actions(actions)
    assert episodes[0].instruction_source == "generated"
    lone = Action(kind="press", t=1.0, t_end=1.0, wall=WALL0, keys=["enter"])
    assert describe_actions([lone]) == "Work on the desktop: 1 step"


def test_wall_span_and_header_are_carried() -> None:
    episode = split_episodes("sess", HEADER, [], [click_at(1.0), click_at(2.0)])[0]
    assert (episode.start_wall, episode.end_wall) == (WALL0 + 1.0, WALL0 + 2.05)
    assert episode.header.screen_width == 1920
    assert episode.session_id == "sess"
