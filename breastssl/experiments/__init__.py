"""Paper experiments, one module each: the runs of its table, then one comparison report (DESIGN §2).

Every module exposes ``register(app)``, adding its sub-command to ``breastssl experiment``; the command
module (``breastssl/commands/experiment.py``) finds them all here.
"""
