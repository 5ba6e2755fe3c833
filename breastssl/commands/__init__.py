"""CLI commands, one module each; every module exposes ``register(app)``.

Add a command by writing ``breastssl/commands/<name>.py`` and naming it in ``COMMANDS``.
"""

COMMANDS = [
    "synth",
    "demo",
    "evaluate",
    "ingest",
    "cache",
    "train",
    "experiment",
    "predict",
    "label_reports",
    "export",
    "strategies",
    "view",
]
