"""A seeded, bounded fuzz of the inputs a user hands breastssl (issue 17): mutated DICOM files (through ingest, the
reader and predict's header scan), manifests + lesions tables (``load_dataset``) and run configs
(``load_run_config``). Every outcome is success or the project's own named error; no crash, no hang.
The same fuzzer, larger: ``python scripts/fuzz.py --n 10000``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fuzz.py"


def load_fuzzer():
    spec = importlib.util.spec_from_file_location("breastssl_fuzz", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def test_a_few_hundred_mutated_inputs_raise_only_named_errors(tmp_path):
    tally = load_fuzzer().fuzz(n=240, seed=0, timeout=20.0, work=tmp_path)
    c = tally.counts
    assert c["dicom:tried"] >= 300 and c["manifest:tried"] >= 50 and c["config:tried"] >= 50
    assert c["dicom:named"] > 0 and c["manifest:named"] > 0 and c["config:named"] > 0  # the mutations bite
    assert tally.total("crash") == 0 and tally.total("hang") == 0, "\n\n".join(tally.failures)
