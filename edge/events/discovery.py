"""Home Assistant MQTT discovery: a pure function from the device's names and topics to config payloads.

One device, ``maskwatch <device_id>``, with a binary_sensor "Unmasked person
present" (the ``unmasked`` topic), a sensor for the scene's state (the ``state``
topic) and sensors for the summary counts. Both state topics follow the runtime's
decision (``state`` events), with its hold and cool-down timing.

Example::

    for topic, payload in discovery_configs("pole-12", topics, prefix="homeassistant").items():
        client.publish(topic, json.dumps(payload), qos=1, retain=True)
"""
from __future__ import annotations

import re

from .. import __version__
from ..decision import STATES

#: Home Assistant components this device declares: (component, object id, config; state_topic names a topic key)
DISCOVERY = (
    ("binary_sensor", "unmasked_present", {"name": "Unmasked person present", "device_class": "occupancy",
                                           "state_topic": "unmasked", "icon": "mdi:face-mask-outline"}),
    ("sensor", "scene_state", {"name": "Scene state", "device_class": "enum", "options": list(STATES),
                               "state_topic": "state", "icon": "mdi:face-recognition"}),
    *(("sensor", f"{state}_people", {"name": name, "state_topic": "summary", "state_class": "measurement",
                                    "unit_of_measurement": "people", "icon": "mdi:face-mask",
                                    "value_template": f"{{{{ value_json.{state} }}}}"})
      for state, name in (("masked", "Masked people"), ("unmasked", "Unmasked people"),
                          ("incorrect", "Incorrectly masked people"))),
)


def node_id(device_id: str) -> str:
    """``device_id`` as a Home Assistant node id and MQTT client id part (only ``[A-Za-z0-9_-]``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", device_id)


def discovery_configs(device_id: str, topics: dict[str, str], prefix: str = "homeassistant",
                      version: str = __version__) -> dict[str, dict]:
    """Discovery topic -> config payload for every entity of the device; ``topics`` maps the topic keys
    (``availability``, ``unmasked``, ``state``, ``summary``) to full topic names."""
    node = node_id(device_id)
    device = {"identifiers": [f"maskwatch_{node}"], "name": f"maskwatch {device_id}",
              "manufacturer": "maskwatch", "model": "maskwatch edge", "sw_version": version}
    configs = {}
    for component, object_id, extra in DISCOVERY:
        configs[f"{prefix}/{component}/maskwatch_{node}/{object_id}/config"] = {
            **extra, "unique_id": f"maskwatch_{node}_{object_id}", "state_topic": topics[extra["state_topic"]],
            "availability_topic": topics["availability"], "payload_available": "online",
            "payload_not_available": "offline", "qos": 1, "device": device,
            "origin": {"name": "maskwatch", "sw_version": version},
        }
    return configs
