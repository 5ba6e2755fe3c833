"""Synthetic multi-vendor breast imaging: DBT, mammography with reports, ultrasound (DESIGN §7).

``GENERATORS`` maps a modality name to (config class, plugin factory); both are imported lazily so
that importing the package stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> (module, config class name, plugin factory name)
GENERATORS: dict[str, tuple[str, str, str]] = {
    "dbt": ("breastssl.data.synth.dbt_dataset", "DBTSynthConfig", "dbt_modality"),
    "mammo": ("breastssl.data.synth.mammo_dataset", "MammoSynthConfig", "mammo_modality"),
    "us": ("breastssl.data.synth.us_dataset", "USSynthConfig", "us_modality"),
}


def get_generator(name: str) -> tuple[type, Any]:
    """(config class, plugin factory) for modality ``name``."""
    if name not in GENERATORS:
        raise KeyError(name)
    module, cfg_name, factory = GENERATORS[name]
    mod = importlib.import_module(module)
    return getattr(mod, cfg_name), getattr(mod, factory)
