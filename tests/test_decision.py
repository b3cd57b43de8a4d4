"""maskwatch.edge.decision on synthetic timelines, and its states on gpiozero's MockFactory pins."""
from __future__ import annotations

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

from maskwatch.edge.decision import Decision, UnknownState, scene_state
from maskwatch.edge.gpio import Indicator
from maskwatch.edge.tracker import Tracker, TrackerConfig


def replay(decision: Decision, timeline) -> list[tuple[float, str]]:
    """Feed ``(now, requested)`` rows (``requested`` None: a tick); the decision's state after each."""
    shown = []
    for now, requested in timeline:
        decision.tick(now) if requested is None else decision.request(requested, now)
        shown.append((now, decision.state))
    return shown


def test_scene_state_most_urgent_first():
    assert scene_state([]) == "idle"
    assert scene_state([None, "with_mask"]) == "masked"
    assert scene_state(["with_mask", "mask_weared_incorrect"]) == "incorrect"
    assert scene_state(["mask_weared_incorrect", "without_mask", "with_mask"]) == "unmasked"
    assert scene_state(["not_a_label"]) == "idle"


def test_scene_state_of_tracked_faces():
    tracker = Tracker(TrackerConfig(reclassify_every=1, vote_agree=1, vote_window=1))
    for rows, labels, expected in (([[0, 0, 40, 40]], ["with_mask"], "masked"),
                                   ([[0, 0, 40, 40], [100, 0, 140, 40]], ["with_mask", "without_mask"], "unmasked")):
        tracker.step(np.array(rows, np.float32), np.ones(len(rows), np.float32),
                     classify=lambda due: [(labels[t.detection], 0.9) for t in due])
        assert scene_state(t.label for t in tracker.tracks.values()) == expected


def test_an_alarm_is_held_for_min_on_and_a_tick_ends_it():
    shown = replay(Decision(min_on_s=2.0, cooldown_s=0), [
        (10.0, "unmasked"), (10.5, "masked"), (11.9, "idle"), (12.0, "idle"),
        (13.0, "unmasked"), (13.1, "masked"), (14.9, None), (15.0, None)])
    assert shown == [(10.0, "unmasked"), (10.5, "unmasked"), (11.9, "unmasked"), (12.0, "idle"),
                     (13.0, "unmasked"), (13.1, "unmasked"), (14.9, "unmasked"), (15.0, "masked")]


def test_escalation_is_immediate_and_deescalation_waits():
    shown = replay(Decision(min_on_s=2.0, cooldown_s=0), [
        (0, "incorrect"), (0.1, "unmasked"), (0.2, "incorrect"), (2.0, "incorrect"), (2.1, "masked")])
    # min_on counts from the alarm's start: incorrect -> unmasked -> incorrect is one alarm
    assert [state for _, state in shown] == ["incorrect", "unmasked", "unmasked", "incorrect", "masked"]


def test_cooldown_holds_back_a_new_alarm_and_never_shows_green():
    shown = replay(Decision(min_on_s=0, cooldown_s=5.0), [
        (0, "unmasked"), (1, "masked"), (3, "unmasked"), (5.9, "incorrect"), (5.95, "masked"), (5.97, "unmasked"),
        (6.0, None)])
    assert [state for _, state in shown] == ["unmasked", "masked", "idle", "idle", "masked", "idle", "unmasked"]


def test_changes_carry_previous_and_requested_and_repeat_requests_are_silent():
    decision = Decision(min_on_s=1.0, cooldown_s=0)
    change = decision.request("unmasked", 0.0)
    assert (change.state, change.previous, change.requested, change.now) == ("unmasked", "idle", "unmasked", 0.0)
    assert decision.request("unmasked", 0.5) is None
    assert decision.request("masked", 0.6) is None  # held: no change yet
    change = decision.tick(1.0)
    assert (change.state, change.previous, change.requested) == ("masked", "unmasked", "masked")
    assert decision.tick(2.0) is None


def test_unknown_states_and_negative_times_are_refused():
    with pytest.raises(UnknownState, match="'alarm' is not one of: unmasked, incorrect, masked, idle"):
        Decision(min_on_s=2.0, cooldown_s=5.0).request("alarm", 0)
    with pytest.raises(ValueError, match="must not be negative"):
        Decision(min_on_s=-1, cooldown_s=0)


def test_the_decision_section_sets_the_timing_and_the_old_signal_keys_still_work(tmp_path, caplog):
    from maskwatch.edge.config import load_config
    from maskwatch.edge.errors import ConfigError

    decision = Decision.from_config(load_config(overrides={"decision.min_on_s": 0.5, "decision.cooldown_s": 7}).decision)
    assert (decision.min_on_s, decision.cooldown_s) == (0.5, 7.0)
    old = tmp_path / "old.toml"
    old.write_text("[signal]\nbackend = 'none'\nmin_on_s = 3.0\ncooldown_s = 1.5\n")
    with caplog.at_level("WARNING"):
        config = load_config(old)
    assert (config.decision.min_on_s, config.decision.cooldown_s) == (3.0, 1.5)
    assert f"{old}: signal.min_on_s is deprecated; use decision.min_on_s" in caplog.text
    with pytest.raises(ConfigError, match="signal.cooldown_s and decision.cooldown_s both given"):
        load_config(old, {"decision.cooldown_s": 2})


def test_the_indicator_shows_each_decision_on_the_pins():
    factory = MockFactory()
    decision = Decision(min_on_s=2.0, cooldown_s=5.0)
    with Indicator({"backend": "mock", "red_pin": 17, "green_pin": 27, "buzzer_pin": 22}, pin_factory=factory) as ind:
        for now, requested in ((0, "masked"), (1, "unmasked"), (1.5, "masked"), (3.0, None), (4.0, "unmasked"),
                               (8.0, None), (8.5, "idle"), (10.5, None)):
            change = decision.tick(now) if requested is None else decision.request(requested, now)
            if change:
                ind.set_state(change.state)
    history = {pin: [int(s.state) for s in factory.pin(pin).states] for pin in (17, 27, 22)}
    factory.close()
    # masked, unmasked (held to 3.0), masked, cool-down idle at 4.0, unmasked at 8.0, idle at 10.5, closed
    assert history[27] == [0, 1, 0, 1, 0]
    assert history[17] == [0, 1, 0, 1, 0]
    assert history[22] == [0, 1, 0, 1, 0]
