"""Settings: one TOML file, overridden by ``SENSORD_<SECTION>__<KEY>`` environment variables.

Every section is a pydantic model with ``extra="forbid"``, a default, bounds and a
description for every field (``config.example.toml`` documents them all): what a route
makes of its readings in detection.py, the service's other sections in sections.py, the
whole and its loading in settings.py. Loading fails fast with every error as ``key path:
value: reason``. Nothing here is read at import time: ``load_settings`` is called by the
command that needs settings.
"""

from sensord.config.detection import RouteSettings
from sensord.config.sections import MqttSettings, StateSettings, WebSettings
from sensord.config.settings import (
    Settings,
    config_path,
    effective_config,
    load_settings,
    route_name,
)

__all__ = [
    "MqttSettings",
    "RouteSettings",
    "Settings",
    "StateSettings",
    "WebSettings",
    "config_path",
    "effective_config",
    "load_settings",
    "route_name",
]
