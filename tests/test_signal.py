"""maskwatch.edge.gpio on gpiozero's own MockFactory: whole pin histories, wiring, errors (timing: test_decision)."""
from __future__ import annotations

import importlib.util
import logging
import time

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from maskwatch.edge.errors import ConfigError, RuntimeUnavailable
from maskwatch.edge.gpio import Indicator, IndicatorClosed, UnknownSignalState
from maskwatch.edge.gpio.backends import backend_class

PINS = {"red_pin": 17, "green_pin": 27, "buzzer_pin": 22}
HAS_JETSON = importlib.util.find_spec("Jetson") is not None


@pytest.fixture
def factory():
    factory = MockFactory()
    yield factory
    factory.close()


@pytest.fixture
def default_factory(monkeypatch):
    """gpiozero's process-wide default factory, unset for the test and restored after it."""
    saved = Device.pin_factory
    Device.pin_factory = None
    yield monkeypatch
    if Device.pin_factory is not None:
        Device.pin_factory.close()
    Device.pin_factory = saved


def indicator(factory, **options) -> Indicator:
    return Indicator({"backend": "mock", **PINS, **options}, pin_factory=factory)


def levels(factory, pin: int) -> list[int]:
    """Every level the mock pin went through, the initial one first."""
    return [int(s.state) for s in factory.pin(pin).states]


def durations(factory, pin: int) -> list[tuple[int, float]]:
    """(level, seconds held) for each completed level after the initial one."""
    states = factory.pin(pin).states
    return [(int(a.state), b.timestamp) for a, b in zip(states[1:], states[2:])]


def test_each_state_drives_its_outputs(factory):
    with indicator(factory) as ind:
        assert ind.backend == "mock"
        assert ind.set_state("masked") == "masked"
        assert ind.set_state("masked") == "masked"  # no change: no new pin writes
        ind.set_state("unmasked")
        ind.set_state("idle")
    assert levels(factory, 27) == [0, 1, 0]  # green: on while masked
    assert levels(factory, 17) == [0, 1, 0]  # red: on while unmasked
    assert levels(factory, 22) == [0, 1, 0]  # buzzer: on while unmasked


def test_incorrect_blinks_red_and_beeps(factory):
    """The whole pattern of three pulses, read off the pins' own history (gpiozero's blink thread keeps the
    time: the test waits for the pulses to happen, never for a fixed time)."""
    blink, beep = 0.1, 0.03  # red 0.1 s on / 0.1 s off; buzzer 0.03 s on / 0.17 s off
    with indicator(factory, blink_s=blink, beep_s=beep) as ind:
        ind.set_state("incorrect")
        deadline = time.monotonic() + 10
        while min(levels(factory, 17).count(1), levels(factory, 22).count(1)) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        ind.set_state("idle")
    red, buzzer = levels(factory, 17), levels(factory, 22)
    assert red[:6] == buzzer[:6] == [0, 1, 0, 1, 0, 1] and red[-1] == buzzer[-1] == 0  # pulses, then off
    assert set(red) <= {0, 1} and all(a != b for a, b in zip(red, red[1:]))  # every change alternates
    assert levels(factory, 27) == [0]  # green never lit
    red_on = [held for level, held in durations(factory, 17)[:4] if level == 1]
    beep_on = [held for level, held in durations(factory, 22)[:4] if level == 1]
    beep_off = [held for level, held in durations(factory, 22)[:4] if level == 0]
    # the blink thread's timing, loosely: each beep is shorter than a red pulse and than the pause after it
    assert max(beep_on) < min(red_on) and max(beep_on) < min(beep_off), (red_on, beep_on, beep_off)


def test_active_low_wiring_inverts_levels(factory):
    ind = indicator(factory, active_high=False)
    ind.set_state("masked")
    ind.set_state("unmasked")
    ind.close()
    # a mock pin starts low; active-low outputs are driven high (off) at once
    assert levels(factory, 27) == [0, 1, 0, 1]
    assert levels(factory, 17) == [0, 1, 0, 1]
    assert levels(factory, 22) == [0, 1, 0, 1]


def test_close_leaves_every_pin_off_and_is_idempotent(factory):
    ind = indicator(factory, blink_s=0.02, beep_s=0.01)
    ind.set_state("incorrect")
    ind.close()
    ind.close()
    assert [factory.pin(p).state for p in PINS.values()] == [0, 0, 0]
    assert all(device.closed for device in ind.devices.values())
    with pytest.raises(IndicatorClosed):
        ind.set_state("masked")
    assert ind.shown == "idle" and "closed" in repr(ind)


def test_mock_backend_logs_pin_history(caplog):
    caplog.set_level(logging.INFO, logger="maskwatch.edge.gpio")
    with Indicator({"backend": "mock", "red_pin": 5}) as ind:
        ind.set_state("unmasked")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("mock pin")]
    assert len(lines) == 1 and lines[0].startswith("mock pin GPIO5 (red): 0@0.000s 1@")
    assert lines[0].split()[-1].startswith("0@")  # switched off before close


def test_gpiozero_pin_factory_env_mock(default_factory):
    default_factory.setenv("GPIOZERO_PIN_FACTORY", "mock")
    with Indicator({"backend": "gpiozero", "green_pin": 27}) as ind:
        assert ind.backend == "gpiozero (MockFactory)"
        ind.set_state("masked")
        pin = ind.devices["green"].pin
    assert [int(s.state) for s in pin.states] == [0, 1, 0]


def test_auto_uses_an_injected_factory(factory):
    with Indicator({"red_pin": 17}, pin_factory=factory) as ind:
        assert ind.backend == "gpiozero (MockFactory)"


@pytest.mark.skipif(HAS_JETSON, reason="Jetson.GPIO is installed here")
def test_auto_falls_back_to_none_and_says_so(default_factory, caplog):
    default_factory.setenv("GPIOZERO_PIN_FACTORY", "no-such-factory")
    caplog.set_level(logging.INFO, logger="maskwatch.edge.gpio")
    with Indicator({"red_pin": 17, "buzzer_pin": 22}) as ind:
        assert ind.backend == "none" and ind.devices == {}
        assert ind.set_state("unmasked") == "unmasked"  # state and timing still kept
    text = caplog.text
    assert "gpiozero unavailable" in text and "jetson unavailable" in text and "auto chose none" in text


@pytest.mark.skipif(HAS_JETSON, reason="Jetson.GPIO is installed here")
def test_jetson_missing_is_runtime_unavailable():
    with pytest.raises(RuntimeUnavailable, match="Jetson.GPIO is not installed") as info:
        Indicator({"backend": "jetson", "red_pin": 17})
    assert isinstance(info.value, ImportError)


@pytest.mark.parametrize("config, words", [
    ({"backend": "gpiozerro"}, ["backend", "'gpiozero'", "gpiozerro"]),
    ({"red": 17}, ["red", "Extra inputs"]),
    ({"red_pin": 40}, ["red_pin", "27"]),
    ({"red_pin": 17, "green_pin": 17}, ["share one pin"]),
    ({"blink_s": 0.1, "beep_s": 0.3}, ["beep_s"]),
])
def test_bad_config_is_one_line_config_error(config, words):
    with pytest.raises(ConfigError) as info:
        Indicator(config)
    message = str(info.value)
    assert "\n" not in message and message.startswith("signal config: ")
    for word in words:
        assert word in message


def test_pin_in_use_is_a_config_error_not_a_fallback(factory):
    with indicator(factory), pytest.raises(ConfigError, match="signal pins {'red': 17}: pin GPIO17 is already in use"):
        Indicator({"red_pin": 17}, pin_factory=factory)


def test_unknown_backend_name_and_state():
    with pytest.raises(ConfigError, match="signal backend 'lgpio' is not one of: auto, gpiozero"):
        backend_class("lgpio")
    with Indicator({"backend": "none"}) as ind, pytest.raises(UnknownSignalState, match="'happy' is not one of"):
        ind.set_state("happy")


def test_a_real_backend_with_no_pins_is_refused_in_one_line():
    from maskwatch.edge.config import load_config
    from maskwatch.edge.errors import ConfigError

    for backend in ("gpiozero", "jetson"):
        with pytest.raises(ConfigError) as err:
            load_config(None, {"signal.backend": backend})
        message = str(err.value)
        assert "\n" not in message and "drives no output" in message and "red_pin" in message
    assert load_config(None, {"signal.backend": "gpiozero", "signal.red_pin": 17}).signal.pins == {"red": 17}
