"""Seeded fuzzer of breastssl's inputs (issue 17): mutated DICOM files, manifests and run configs.

Every input goes through what a user would run on it — DICOM: ``breastssl ingest --format folder`` (with and
without ``--skip-bad``), the reader ``read_image`` and predict's header scan (``collect_stacks``); manifests:
``load_dataset`` (manifest + lesions); configs: ``load_run_config`` (a ``breastssl train`` recipe). The only
acceptable outcomes are success or the project's own named error (:class:`breastssl.errors.UserError`, exit 2
through the CLI). Anything else is a **crash**; an input still running after ``--timeout`` seconds is a **hang**.

    python scripts/fuzz.py --n 10000 --seed 0          # prints: tried, accepted, named errors, crashes, hangs

``tests/foundation/test_fuzz_inputs.py`` runs a few hundred of the same inputs in the default suite.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# the checkout this script lives in, not whichever copy of breastssl happens to be installed
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

JUNK = ["", "1A", "abc", "-1", "0", "1e38", "-1e38", "inf", "nan", "1.5", "0\\0&0", "9" * 40, "x" * 300, "\\\\"]
HEADER_KEYS = ["NumberOfFrames", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
               "SamplesPerPixel", "PhotometricInterpretation", "InstanceNumber", "ImagePositionPatient",
               "PixelSpacing", "ImagerPixelSpacing", "WindowCenter", "WindowWidth", "RescaleSlope",
               "RescaleIntercept", "ImageLaterality", "Laterality", "Modality", "ViewPosition", "PatientID",
               "StudyInstanceUID", "SeriesInstanceUID", "PlanarConfiguration", "SliceThickness"]  # fmt: skip
CONFIG_JUNK: list[object] = [True, "abc", -1, 0, float("inf"), float("nan"), [0, 0], [-80, 64], [10**5, 10**5],
                             {"a": 1}, None, 10**30, 1.5, "", [1, 2, 3]]  # fmt: skip
RECIPES = ["dbt_selectivekd_demo.yaml", "mammo_self_training_run_demo.yaml", "us_mean_teacher_run_demo.yaml",
           "comoto_run_student_demo.yaml"]  # fmt: skip


class Hang(Exception):
    """An input ran longer than the timeout."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` after ``seconds`` (SIGALRM; the main thread of a Unix process)."""

    def ring(signum: int, frame: object) -> None:
        raise Hang(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class Tally:
    """Outcomes per input kind, and the first few crashes and hangs with their tracebacks."""

    counts: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    named: dict[str, list[str]] = field(default_factory=dict)  # a few named errors per kind, to see what bites

    def record(self, kind: str, target: str, fn: Callable[[], object], timeout: float) -> None:
        from breastssl.errors import UserError

        self.counts[f"{kind}:tried"] += 1
        try:
            with (
                deadline(timeout),
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                result = fn()
            code = result if isinstance(result, int) and not isinstance(result, bool) else 0  # a CLI exit status
            bad_exit = code not in (0, 2)
            self.counts[f"{kind}:{'crash' if bad_exit else 'named' if code == 2 else 'accepted'}"] += 1
            if bad_exit:
                self._keep(kind, target, f"exit status {result}")
        except UserError as exc:
            self.counts[f"{kind}:named"] += 1
            seen = self.named.setdefault(kind, [])
            if len(seen) < 5:
                seen.append(str(exc).splitlines()[0][:200])
        except Hang as exc:
            self.counts[f"{kind}:hang"] += 1
            self._keep(kind, target, str(exc))
        except Exception:  # noqa: BLE001  (any other exception is what the fuzzer looks for)
            self.counts[f"{kind}:crash"] += 1
            self._keep(kind, target, traceback.format_exc(limit=4))

    def _keep(self, kind: str, target: str, what: str) -> None:
        if len(self.failures) < 20:  # the first few, each cut short (a mutated header can make huge messages)
            text = "\n".join(line[:300] for line in what.splitlines()[-12:])
            self.failures.append(f"[{kind}] {target}\n{text}")

    def total(self, outcome: str) -> int:
        return sum(v for k, v in self.counts.items() if k.endswith(f":{outcome}"))


# ---- DICOM -----------------------------------------------------------------------------------------------------
def dicom_seeds(work: Path) -> list[Path]:
    """Valid files to mutate: synthetic mammography, DBT and ultrasound DICOM + pydicom's bundled image files."""
    from breastssl.data.synth.run import run_synth

    seeds: list[Path] = []
    for modality in ("mammo", "dbt", "us"):
        out = work / "seeds" / modality
        run_synth(modality, out, n=1, seed=0, fmt="dicom", quiet=True)
        seeds += sorted(out.rglob("*.dcm"))[:2]
    import pydicom

    bundled = Path(pydicom.__file__).parent / "data" / "test_files"  # shipped with pydicom: never downloaded
    for name in ("examples_rgb_color.dcm", "examples_palette.dcm", "examples_ybr_color.dcm", "examples_jpeg2k.dcm",
                 "CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm", "badVR.dcm",
                 "JPEG2000.dcm"):  # fmt: skip
        if (bundled / name).is_file():
            seeds.append(bundled / name)
    return seeds


def mutate_dicom(data: bytes, rng: random.Random) -> bytes:
    """Truncate, flip bytes, or set/delete a header element (falls back to byte flips when pydicom cannot parse)."""
    choice = rng.random()
    if choice < 0.25:
        return data[: rng.randrange(0, max(1, len(data)))]
    if choice < 0.5:
        out = bytearray(data)
        for _ in range(rng.randint(1, 12)):
            pos = rng.randrange(128, max(129, min(len(out), 2000)))
            if pos < len(out):
                out[pos] = rng.randrange(256)
        return bytes(out)
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        key = rng.choice([*HEADER_KEYS, "PixelData", "TransferSyntaxUID"])
        if rng.random() < 0.3:
            if key == "TransferSyntaxUID" and "TransferSyntaxUID" in ds.file_meta:
                del ds.file_meta.TransferSyntaxUID
            elif key in ds:
                delattr(ds, key)
        elif key == "TransferSyntaxUID":
            ds.file_meta.TransferSyntaxUID = rng.choice(["1.2.3.4", "1.2.840.10008.1.2.4.50", "abc"])
        elif key != "PixelData":
            ds.add_new(pydicom.datadict.tag_for_keyword(key), "LO", rng.choice(JUNK))
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=False)
        return buf.getvalue()
    except Exception:  # noqa: BLE001  (an unparseable seed is mutated by bytes instead)
        return mutate_dicom(data, random.Random(rng.random()) if choice >= 0.5 else rng)


def fuzz_dicom(tally: Tally, seed_file: Path, rng: random.Random, work: Path, timeout: float) -> None:
    from breastssl.cli import main
    from breastssl.data.dicom import read_image
    from breastssl.inference.dbt_predict import collect_stacks

    case = work / f"dicom_{tally.counts['dicom:tried']}"
    shutil.rmtree(case, ignore_errors=True)
    (case / "in").mkdir(parents=True)
    target = case / "in" / "x.dcm"
    target.write_bytes(mutate_dicom(seed_file.read_bytes(), rng))
    name = f"{seed_file.name} mutated"
    tally.record("dicom", name, lambda: read_image(target), timeout)
    args = ["ingest", "--format", "folder", "--root", str(case / "in"), "--out", str(case / "out" / "m.csv")]
    tally.record("dicom", name, lambda: main([*args, *(["--skip-bad"] if rng.random() < 0.5 else [])]), timeout)
    tally.record("dicom", name, lambda: collect_stacks([case / "in"]), timeout)
    shutil.rmtree(case, ignore_errors=True)


# ---- manifests ---------------------------------------------------------------------------------------------------
def manifest_seeds(work: Path) -> list[Path]:
    from breastssl.data.synth.run import run_synth

    roots = []
    for modality in ("dbt", "mammo", "us"):
        out = work / "tables" / modality
        run_synth(modality, out, n=3, seed=0, fmt="npy", quiet=True)
        roots.append(out)
    return roots


def fuzz_manifest(tally: Tally, root: Path, rng: random.Random, work: Path, timeout: float) -> None:
    import pandas as pd

    from breastssl.data.schema import load_dataset

    case = work / f"table_{tally.counts['manifest:tried']}"
    shutil.rmtree(case, ignore_errors=True)
    shutil.copytree(root, case)
    which = rng.choice(["manifest.csv", "lesions.csv"])
    df = pd.read_csv(case / which, dtype=str, keep_default_na=False)
    benign = rng.random() < 0.15  # row order only: must be accepted, so the fuzzer sees both outcomes
    if benign:
        df = df.sample(frac=1.0, random_state=rng.randrange(2**31)).reset_index(drop=True)
    for _ in range(0 if benign else rng.randint(1, 3)):
        op = rng.random()
        if op < 0.7 and len(df):
            df.iat[rng.randrange(len(df)), rng.randrange(df.shape[1])] = rng.choice([*JUNK, "NaN", "1e20", "9999"])
        elif op < 0.85 and df.shape[1] > 1:
            df = df.drop(columns=[rng.choice(list(df.columns))])
        elif len(df):
            df = pd.concat([df, df.iloc[[rng.randrange(len(df))]]], ignore_index=True)
    df.to_csv(case / which, index=False)
    tally.record("manifest", f"{root.name}/{which} mutated", lambda: load_dataset(case / "manifest.csv"), timeout)
    shutil.rmtree(case, ignore_errors=True)


# ---- configs -----------------------------------------------------------------------------------------------------
def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in [(*prefix, k), *_paths(v, (*prefix, k))]]
    return []


def fuzz_config(tally: Tally, configs: Path, rng: random.Random, work: Path, timeout: float) -> None:
    from breastssl.config import read_yaml
    from breastssl.run.config import load_run_config

    recipe = configs / rng.choice(RECIPES)
    data = read_yaml(recipe)
    path = work / f"cfg_{tally.counts['config:tried']}.yaml"
    op = rng.random()
    if op >= 0.9:  # a benign change: a valid step count, must be accepted
        data.setdefault("train", {})["steps"] = rng.randint(1, 10**6)
        text = yaml.safe_dump(data, allow_unicode=True)
    elif op < 0.08:
        text = f"_base_: {path.name}\n" if rng.random() < 0.5 else f"_base_: {rng.choice(['[a, b]', '3', 'null'])}\n"
    elif op < 0.12:
        depth = rng.choice([50, 2000, 5000])
        text = "a: " + "[" * depth + "]" * depth + "\n"
    elif op < 0.16:
        text = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        )
    elif op < 0.2:
        text = yaml.safe_dump(data) + "train:\n  steps: 3\n"  # a duplicate top-level key
    else:
        keys = _paths(data)
        for _ in range(rng.randint(1, 3)):
            key = rng.choice(keys) if keys else ("train",)
            node = data
            for part in key[:-1]:
                node = node.setdefault(part, {}) if isinstance(node, dict) else {}
            if isinstance(node, dict):
                if rng.random() < 0.2:
                    node.pop(key[-1], None)
                else:
                    node[key[-1]] = rng.choice(CONFIG_JUNK)
        text = yaml.safe_dump(data, allow_unicode=True)
    path.write_text(text)
    tally.record("config", f"{recipe.name} mutated", lambda: load_run_config(path), timeout)
    path.unlink(missing_ok=True)


# ---- driver ------------------------------------------------------------------------------------------------------
def fuzz(n: int, seed: int = 0, timeout: float = 20.0, work: Path | None = None) -> Tally:
    """``n`` inputs in all, split over DICOM, manifests and configs (2 : 1 : 1), seeded; returns the tally."""
    import os

    rng = random.Random(seed)
    configs = Path(__file__).resolve().parents[1] / "configs"
    tally = Tally()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(work or tmp)
        # ingest makes keyed pseudonyms: a throwaway key, never the user's (~/.config/breastssl/pseudonym.key)
        os.environ["BREASTSSL_PSEUDONYM_KEY"] = str(Path(tmp) / "fuzz.key")
        dicoms, tables = dicom_seeds(base), manifest_seeds(base)
        for i in range(n):
            kind = i % 4
            if kind in (0, 1):
                fuzz_dicom(tally, rng.choice(dicoms), rng, base, timeout)
            elif kind == 2:
                fuzz_manifest(tally, rng.choice(tables), rng, base, timeout)
            else:
                fuzz_config(tally, configs, rng, base, timeout)
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="inputs to try")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds before an input counts as a hang")
    parser.add_argument("--show-errors", action="store_true", help="print the first named errors of each kind")
    args = parser.parse_args()
    start = time.time()
    tally = fuzz(args.n, args.seed, args.timeout)
    print(f"fuzz: {args.n} inputs (seed {args.seed}) in {time.time() - start:.0f} s")
    for kind in ("dicom", "manifest", "config"):
        c = tally.counts
        print(f"  {kind:8s} tried {c[f'{kind}:tried']:6d}  accepted {c[f'{kind}:accepted']:6d}  named errors "
              f"{c[f'{kind}:named']:6d}  crashes {c[f'{kind}:crash']:4d}  hangs {c[f'{kind}:hang']:4d}")  # fmt: skip
    print(f"  total: crashes {tally.total('crash')}, hangs {tally.total('hang')}")
    if args.show_errors:
        for kind, messages in tally.named.items():
            print(f"\n{kind}: first named errors\n  " + "\n  ".join(messages))
    for failure in tally.failures:
        print("\n" + failure)


if __name__ == "__main__":
    main()
