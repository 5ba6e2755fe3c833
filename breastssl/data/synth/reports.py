"""Synthetic mammography reports with a controllable report/image disagreement rate (DESIGN §5.2, §7).

A report has a DESCRIPTION (findings) and an IMPRESSION section, like the reports the self-training
paper (seed 002) feeds to its text model as ``[CLS] description [SEP] impression``. The label of a
side is *mass presence* (benign or malignant), the paper's target; the BI-RADS category carries the
malignancy assessment.

For every side the generator records the image truth (``true_label``), what the report means
(``intended``: positive | negative), how it says it (``report_label``: positive | negative | uncertain)
and why they differ (``error``: none | missed | false_alarm | wrong_side). The disagreement rate is
per side: each side is in error with probability ``error_rate`` exactly, and a share of the errors
of an exam come in pairs, which on a one-sided exam turns a miss and a false alarm into a finding
reported on the wrong side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

SIDE_NAME = {"L": "left", "R": "right"}
NEGATION_CUES = ("no suspicious", "no evidence", "without evidence", "no dominant", "no mass", "negative", "absent")
UNCERTAINTY_CUES = ("possible", "cannot be excluded", "probably", "likely", "may represent", "indeterminate")
# BI-RADS categories from least to most concerning, for the overall assessment of an exam.
_CONCERN = [1, 2, 3, 0, 4, 5]


@dataclass
class LesionFinding:
    """A mass as a radiologist would locate it: class, clock face, quadrant, depth, size."""

    lesion_class: str  # malignant | benign
    clock: int  # 1..12
    quadrant: str  # "upper outer", ..., or "retroareolar"
    depth: str  # anterior | middle | posterior
    size_mm: float


@dataclass
class SideReport:
    """What the report says about one breast, next to the truth."""

    true_label: str  # positive | negative: a mass is in the image
    intended: str  # positive | negative: what the report means
    report_label: str  # positive | negative | uncertain: how it is phrased
    error: str  # none | missed | false_alarm | wrong_side
    birads: int
    soft_label: float  # the probability of a mass a careful reader would take from the text
    sentences: list[str] = field(default_factory=list)


@dataclass
class Report:
    """One exam's report."""

    description: str
    impression: str
    sides: dict[str, SideReport]
    birads: int

    @property
    def text(self) -> str:
        return f"DESCRIPTION:\n{self.description}\n\nIMPRESSION:\n{self.impression}\n"


def clock_position(side: str, lateral: float, superior: float) -> tuple[int, str]:
    """Clock hour and quadrant of a point of the coronal plane, as seen facing the patient.

    ``lateral`` / ``superior`` are offsets from the nipple axis in units of the breast radius.
    Lateral is 9 o'clock on the right breast and 3 o'clock on the left one.
    """
    x_view = lateral if side == "L" else -lateral
    hour = int(round(math.atan2(x_view, superior) / (2 * math.pi) * 12)) % 12
    if math.hypot(lateral, superior) < 0.25:
        return hour or 12, "retroareolar"
    quadrant = ("upper" if superior >= 0 else "lower") + (" outer" if lateral >= 0 else " inner")
    return hour or 12, quadrant


def error_flags(rng: np.random.Generator, rate: float, paired_share: float) -> dict[str, bool]:
    """Which sides the report gets wrong: marginal ``rate`` per side, ``paired_share`` of errors in pairs."""
    if rate <= 0:
        return {"L": False, "R": False}
    # P(both) = both, P(only one given side) = rate - both, so each side errs with probability rate;
    # P(neither) = 1 - 2 rate + both must stay >= 0.
    both = min(rate, max(rate * paired_share, 2 * rate - 1))
    one = rate - both
    u = rng.random()
    if u < both:
        return {"L": True, "R": True}
    if u < both + one:
        return {"L": True, "R": False}
    if u < both + 2 * one:
        return {"L": False, "R": True}
    return {"L": False, "R": False}


def _pick(rng: np.random.Generator, options: list[str] | tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _density_sentence(density: float, rng: np.random.Generator) -> str:
    if density < 0.2:
        return _pick(rng, ["The breasts are almost entirely fatty.", "Predominantly fatty breast tissue (ACR a)."])
    if density < 0.4:
        return _pick(
            rng, ["There are scattered areas of fibroglandular density.", "Scattered fibroglandular tissue (ACR b)."]
        )
    if density < 0.6:
        return _pick(
            rng,
            [
                "The breasts are heterogeneously dense, which may obscure small masses.",
                "Heterogeneously dense breast tissue (ACR c).",
            ],
        )
    return _pick(rng, ["The breasts are extremely dense, which lowers the sensitivity of mammography.", "ACR d."])


def _location(f: LesionFinding, side: str, rng: np.random.Generator) -> str:
    s = SIDE_NAME[side]
    if f.quadrant == "retroareolar":
        return _pick(rng, [f"in the retroareolar region of the {s} breast", f"in the {s} breast, subareolar"])
    return _pick(
        rng,
        [
            f"in the {s} breast at {f.clock} o'clock, {f.depth} depth",
            f"in the {f.quadrant} quadrant of the {s} breast",
            f"in the {s} breast, {f.quadrant} quadrant ({f.clock} o'clock), {f.depth} third",
            f"at the {f.clock} o'clock position of the {s} breast",
        ],
    )


def _mass_words(f: LesionFinding, rng: np.random.Generator) -> str:
    if f.lesion_class == "malignant":
        return _pick(
            rng,
            [
                "irregular mass with spiculated margins",
                "irregular high-density spiculated mass",
                "ill-defined mass with radiating spicules",
                "spiculated mass with associated architectural distortion",
            ],
        )
    return _pick(
        rng,
        ["oval circumscribed mass", "well-circumscribed oval opacity", "round mass with smooth margins", "oval mass"],
    )


def _positive(f: LesionFinding, side: str, rng: np.random.Generator) -> tuple[str, str, int, float]:
    """(finding sentence, impression sentence, BI-RADS, soft label) of a definite mass."""
    s, size = SIDE_NAME[side], int(round(f.size_mm))
    where = _location(f, side, rng)
    views = _pick(rng, ["", " on both CC and MLO views", " on the craniocaudal and oblique views"])
    finding = _pick(
        rng,
        [
            f"{'An' if str(size).startswith(('8', '11', '18')) else 'A'} {size} mm {_mass_words(f, rng)} is seen "
            f"{where}{views}.",
            f"There is a {_mass_words(f, rng)} {where}, measuring {size} mm.",
            f"{s.capitalize()} breast: {_mass_words(f, rng)}, {size} mm, {f.clock} o'clock, {f.depth} depth{views}.",
        ],
    )
    if f.lesion_class == "malignant":
        birads = 5 if (f.size_mm > 18 and rng.random() < 0.6) else 4
        sub = "" if birads == 5 else _pick(rng, ["A", "B", "C"])
        imp = _pick(
            rng,
            [
                f"Mass in the {s} breast, {'highly suggestive of' if birads == 5 else 'suspicious for'} malignancy. "
                f"BI-RADS {birads}{sub}.",
                f"{s.capitalize()} breast mass at {f.clock} o'clock: BI-RADS {birads}{sub}. Biopsy is recommended.",
                f"BI-RADS {birads}{sub}, {s} breast: suspicious for malignancy; tissue sampling recommended.",
            ],
        )
        return finding, imp, birads, 0.98
    birads = 2 if rng.random() < 0.6 else 3
    if birads == 2:
        imp = _pick(
            rng,
            [
                f"Benign-appearing circumscribed mass in the {s} breast, likely fibroadenoma. BI-RADS 2.",
                f"{s.capitalize()} breast: benign finding (oval circumscribed mass). BI-RADS 2.",
            ],
        )
        return finding, imp, 2, 0.95
    imp = _pick(
        rng,
        [
            f"Probably benign mass in the {s} breast. BI-RADS 3: short-interval follow-up in 6 months.",
            f"{s.capitalize()} breast mass, probably benign (BI-RADS 3); follow-up mammogram recommended.",
        ],
    )
    return finding, imp, 3, 0.9


def _uncertain(f: LesionFinding, side: str, rng: np.random.Generator) -> tuple[str, str, int, float]:
    """A hedged finding: the reader is not sure there is a mass."""
    s = SIDE_NAME[side]
    where = _location(f, side, rng)
    finding = _pick(
        rng,
        [
            f"A possible ill-defined density is noted {where}; a mass cannot be excluded.",
            f"There is a focal asymmetry {where}, which may represent a mass.",
            f"Indeterminate opacity {where}, possibly a mass partly obscured by dense tissue.",
        ],
    )
    imp = _pick(
        rng,
        [
            f"Possible mass in the {s} breast. BI-RADS 0: additional views and ultrasound recommended.",
            f"{s.capitalize()} breast asymmetry, a mass cannot be excluded. BI-RADS 0, incomplete.",
        ],
    )
    return finding, imp, 0, 0.6


def _negative(side: str, rng: np.random.Generator, hedged: bool) -> tuple[str, str, int, float]:
    s = SIDE_NAME[side]
    if hedged:
        finding = _pick(
            rng,
            [
                f"No definite mass in the {s} breast; an area of overlapping tissue is probably summation.",
                f"The {s} breast shows a subtle asymmetry, likely normal overlapping parenchyma; no mass.",
            ],
        )
        return finding, f"{s.capitalize()} breast: probably benign tissue overlap. BI-RADS 2.", 2, 0.25
    finding = _pick(
        rng,
        [
            f"No suspicious mass, architectural distortion or suspicious calcifications in the {s} breast.",
            f"The {s} breast is without evidence of a mass or malignancy.",
            f"{s.capitalize()} breast: no dominant mass is identified.",
            f"There is no evidence of malignancy in the {s} breast.",
        ],
    )
    birads, soft = 1, 0.03
    if rng.random() < 0.2:
        finding += f" Scattered benign-appearing calcifications in the {s} breast."
        birads, soft = 2, 0.05
    imp = _pick(rng, [f"{s.capitalize()} breast: negative.", f"No mammographic evidence of malignancy, {s} breast."])
    return finding, imp, birads, soft


def _mirror(f: LesionFinding) -> LesionFinding:
    return LesionFinding(f.lesion_class, (12 - f.clock) % 12 or 12, f.quadrant, f.depth, f.size_mm)


def _fabricate(side: str, rng: np.random.Generator) -> LesionFinding:
    ang, rho = rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 0.9)
    clock, quadrant = clock_position(side, rho * math.cos(ang), rho * math.sin(ang))
    cls = "benign" if rng.random() < 0.6 else "malignant"
    return LesionFinding(cls, clock, quadrant, _pick(rng, ["anterior", "middle", "posterior"]), rng.uniform(6, 20))


def make_report(
    findings: dict[str, list[LesionFinding]],
    rng: np.random.Generator,
    error_rate: float = 0.05,
    uncertainty_rate: float = 0.15,
    paired_share: float = 0.3,
    density: float = 0.4,
) -> Report:
    """Write the report of one exam from the true per-side ``findings`` ({"L": [...], "R": [...]})."""
    truth = {s: bool(findings.get(s)) for s in ("L", "R")}
    flags = error_flags(rng, error_rate, paired_share)
    said: dict[str, list[LesionFinding]] = {}
    errors = {"L": "none", "R": "none"}
    if flags["L"] and flags["R"] and truth["L"] != truth["R"]:
        pos, neg = ("L", "R") if truth["L"] else ("R", "L")
        said[pos], said[neg] = [], [_mirror(f) for f in findings[pos]]
        errors = {"L": "wrong_side", "R": "wrong_side"}
    else:
        for s in ("L", "R"):
            if not flags[s]:
                said[s] = list(findings.get(s, []))
            elif truth[s]:
                said[s], errors[s] = [], "missed"
            else:
                said[s], errors[s] = [_fabricate(s, rng)], "false_alarm"
    order = ["R", "L"] if rng.random() < 0.7 else ["L", "R"]
    desc = [_density_sentence(density, rng)]
    if rng.random() < 0.4:
        desc.append(_pick(rng, ["No prior studies are available for comparison.", "Compared with the prior study."]))
    imp: list[str] = []
    sides: dict[str, SideReport] = {}
    both_clear = not said["L"] and not said["R"] and rng.random() < 0.5
    for s in order:
        hedge = rng.random() < (uncertainty_rate if said[s] else uncertainty_rate / 3)
        parts = []
        for i, f in enumerate(said[s]):
            # Only the first mass of a side is hedged; a second one is described as it is.
            parts.append(_uncertain(f, s, rng) if hedge and i == 0 else _positive(f, s, rng))
        if not said[s]:
            parts = [_negative(s, rng, hedge and not both_clear)]
        label = "positive" if said[s] else "negative"
        phrased = "uncertain" if hedge and not both_clear else label
        birads = max((p[2] for p in parts), key=_CONCERN.index)
        soft = max(p[3] for p in parts)
        sentences = [p[0] for p in parts] + [p[1] for p in parts]
        if not both_clear:
            desc.extend(p[0] for p in parts)
            imp.extend(p[1] for p in parts)
        true_label = "positive" if truth[s] else "negative"
        sides[s] = SideReport(true_label, label, phrased, errors[s], birads, soft, sentences)
    if both_clear:
        desc.append(
            _pick(
                rng,
                [
                    "No suspicious mass, architectural distortion or suspicious calcifications in either breast.",
                    "Bilateral breasts: no dominant mass and no evidence of malignancy.",
                    "Both breasts are without evidence of a suspicious mass.",
                ],
            )
        )
        for s in sides:
            sides[s].birads, sides[s].soft_label, sides[s].sentences = 1, 0.03, [desc[-1]]
    overall = max((r.birads for r in sides.values()), key=_CONCERN.index)
    if overall == 1:
        imp.append(_pick(rng, ["Negative bilateral mammogram. BI-RADS 1.", "No mammographic evidence of malignancy."]))
    if said["L"] and said["R"] and rng.random() < 0.5:
        imp.insert(0, "Bilateral findings as described.")
    imp.append(f"Overall assessment: BI-RADS {overall}.")
    if overall in (1, 2):
        imp.append(_pick(rng, ["Routine screening in 1 year.", "Recommend annual screening mammography."]))
    return Report(" ".join(desc), "\n".join(imp), sides, overall)


def has_cue(text: str, cues: tuple[str, ...]) -> bool:
    """Whether ``text`` contains any of ``cues`` (case-insensitive)."""
    low = text.lower()
    return any(c in low for c in cues)
