"""Batched device augmentation (data/device_augment.py) against the per-sample reference (data/transforms.py)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

import breastssl.data.transforms as T
from breastssl.data.device_augment import BatchAugment, DeviceAugment, clahe, step_generator
from breastssl.data.transforms import AugmentConfig
from breastssl.engine import TrainConfig, fit

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "dbt_selectivekd_demo.yaml"
OFF = dict(hflip=0, vflip=0, rotate=0, brightness_contrast=0, noise=0, sharpen=0, clahe=0, solarize=0)
# rotation: both paths sample bilinearly at the same points; grid_sample takes them as float32 normalised
# coordinates (scipy: float64 pixel ones), an error of ~1e-7 of the image width, so values agree to ~1e-5 at
# these sizes; 1e-4 leaves margin. Masks are nearest-neighbour: a point exactly half-way may round either way.
ROT_ATOL = 1e-4


def _image(h: int = 32, w: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth (H, W) image in [0, 1] with a lesion-like blob and its binary mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    img = 0.4 + 0.2 * np.sin(yy / 3.0) * np.cos(xx / 4.0) + 0.05 * rng.random((h, w))
    blob = (yy - 0.3 * h) ** 2 + (xx - 0.65 * w) ** 2 < (0.15 * h) ** 2
    return np.clip(img + 0.3 * blob, 0, 1).astype(np.float32), blob.astype(np.float32)


def _replay(seed: int, cfg: AugmentConfig, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The uniforms (1, 8), (1, 4) and standard normals (1, 1, H, W) ``transforms.augment`` draws from ``seed``."""
    rng = np.random.default_rng(seed)
    u, v = rng.random(8), rng.uniform(-1, 1, 4)
    z = rng.normal(0.0, cfg.noise_std, shape) / cfg.noise_std if u[6] < cfg.noise else np.zeros(shape)
    return torch.from_numpy(u)[None], torch.from_numpy(v)[None], torch.from_numpy(z).float()[None, None]


def _both(seed: int, cfg: AugmentConfig, img: np.ndarray, mask: np.ndarray):
    """(reference image, mask), (device image, mask) as numpy, for the reference's draws from ``seed``."""
    ref = T.augment(img, mask, np.random.default_rng(seed), cfg)
    u, v, z = _replay(seed, cfg, img.shape)
    aug = DeviceAugment(cfg)
    x, m = aug.apply(torch.from_numpy(img)[None, None], torch.from_numpy(mask)[None, None],
                     aug.params_from_uniforms(u, v), noise=z)  # fmt: skip
    return ref, (x[0, 0].numpy(), m[0, 0].numpy())


def test_flips_are_identical_to_the_reference():
    img, mask = _image()
    for hflip, vflip in [(1, 0), (0, 1), (1, 1)]:
        cfg = AugmentConfig(**{**OFF, "hflip": hflip, "vflip": vflip})
        (ri, rm), (di, dm) = _both(0, cfg, img, mask)
        np.testing.assert_array_equal(di, ri)
        np.testing.assert_array_equal(dm, rm)


@pytest.mark.parametrize("shape", [(32, 24), (33, 25)])
def test_rotation_matches_scipy_within_float32_grid_rounding(shape):
    img, mask = _image(*shape)
    cfg = AugmentConfig(**{**OFF, "rotate": 1.0})
    for seed in range(6):
        (ri, rm), (di, dm) = _both(seed, cfg, img, mask)
        np.testing.assert_allclose(di, ri, atol=ROT_ATOL, rtol=0)
        assert (dm != rm).mean() <= 0.005, seed


def test_every_op_but_clahe_matches_the_reference_for_the_same_draws():
    """Default probabilities without CLAHE: flips, rotation, brightness/contrast, sharpen, noise, solarize, chained."""
    img, mask = _image()
    cfg = AugmentConfig(clahe=0.0, solarize=0.3)
    for seed in range(40):
        (ri, rm), (di, dm) = _both(seed, cfg, img, mask)
        # a value within rounding of the solarize threshold may flip on one side only: those pixels are left out
        t = cfg.solarize_threshold
        away = (np.abs(ri - t) > 1e-3) & (np.abs(ri - (1 - t)) > 1e-3)
        np.testing.assert_allclose(di[away], ri[away], atol=ROT_ATOL, rtol=0, err_msg=f"seed {seed}")
        assert (dm != rm).mean() <= 0.005, seed


@pytest.mark.parametrize("shape", [(32, 24), (64, 48), (96, 64)])
def test_clahe_is_close_to_skimage_but_not_identical(shape):
    """kornia's CLAHE with skimage's tiles and clip: the same picture, not the same values.

    Measured: correlation 0.996 / 0.945 / 0.998 and mean |difference| 0.020 / 0.068 / 0.016 at these sizes (kornia
    counts 256 levels and blends tiles half a pixel apart from skimage); the bounds leave a little margin.
    """
    img, _ = _image(*shape)
    ref = T.clahe(img)
    dev = clahe(torch.from_numpy(img)[None, None])[0, 0].numpy()
    assert dev.min() >= 0 and dev.max() <= 1
    assert np.corrcoef(ref.ravel(), dev.ravel())[0, 1] > 0.93
    assert np.abs(ref - dev).mean() < 0.08


def test_mask_stays_on_a_bright_square_under_flips_and_rotations():
    h, w = 48, 40
    img = np.zeros((h, w), np.float32)
    img[8:20, 22:34] = 1.0  # off-centre, so a wrong flip axis or rotation sense would move it away
    mask = (img > 0).astype(np.float32)
    aug = DeviceAugment(AugmentConfig(**{**OFF, "hflip": 0.5, "vflip": 0.5, "rotate": 1.0}))
    n = 32
    params = aug.draw(n, torch.Generator().manual_seed(0))
    x, m = aug.apply(torch.from_numpy(img).expand(n, 1, h, w), torch.from_numpy(mask).expand(n, 1, h, w), params)
    for b in range(n):
        bright, inside = x[b, 0] > 0.5, m[b, 0] > 0.5
        assert inside.sum() > 0.8 * mask.sum()
        assert (bright & inside).sum() >= 0.95 * inside.sum(), b  # the mask lies on the square ...
        assert (bright & inside).sum() >= 0.95 * bright.sum(), b  # ... and covers it
        # the boxes around mask and square agree to a pixel
        box = [torch.nonzero(t).amin(0) for t in (bright, inside)] + [
            torch.nonzero(t).amax(0) for t in (bright, inside)
        ]
        assert (box[0] - box[1]).abs().max() <= 1 and (box[2] - box[3]).abs().max() <= 1, b


def test_parameter_distributions_match_the_reference(monkeypatch):
    """4,000 draws of each path: how often each op fires, and the angles and sharpen amounts (KS test)."""
    n, cfg = 4000, AugmentConfig(clahe=0.3, solarize=0.2)
    seen: dict[str, list[float]] = {"hflip": [], "vflip": [], "angle": [], "clahe": [], "amount": []}

    def flip(image, mask, axis):
        seen["hflip" if axis == 1 else "vflip"].append(1.0)
        return image, mask

    def rotate(image, mask, degrees):
        seen["angle"].append(degrees)
        return image, mask

    monkeypatch.setattr(T, "flip", flip)
    monkeypatch.setattr(T, "rotate", rotate)
    monkeypatch.setattr(T, "clahe", lambda image: seen["clahe"].append(1.0) or image)
    monkeypatch.setattr(T, "sharpen", lambda image, amount: seen["amount"].append(amount) or image)
    img, mask = np.full((4, 4), 0.5, np.float32), np.zeros((4, 4), np.float32)
    for i in range(n):
        T.augment(img, mask, np.random.default_rng([123, i]), cfg)

    p = DeviceAugment(cfg).draw(n, torch.Generator().manual_seed(123))
    for key, prob in [("hflip", cfg.hflip), ("vflip", cfg.vflip), ("clahe", cfg.clahe)]:
        sigma = np.sqrt(2 * prob * (1 - prob) / n)  # of the difference of two rates
        assert abs(len(seen[key]) / n - p[key].double().mean().item()) < 4.5 * sigma, key
        assert abs(p[key].double().mean().item() - prob) < 4.5 * sigma / np.sqrt(2), key
    for key, prob in [("rotate", cfg.rotate), ("bc", cfg.brightness_contrast), ("noise", cfg.noise),
                      ("sharpen", cfg.sharpen), ("solarize", cfg.solarize)]:  # fmt: skip
        assert abs(p[key].double().mean().item() - prob) < 4.5 * np.sqrt(prob * (1 - prob) / n), key
    angles = p["angle"][p["rotate"]].numpy()
    assert np.abs(angles).max() <= cfg.max_degrees and stats.ks_2samp(angles, seen["angle"]).pvalue > 1e-3
    amounts = p["amount"][p["sharpen"]].numpy()
    assert amounts.min() >= 0.5 and amounts.max() <= 1.0 and stats.ks_2samp(amounts, seen["amount"]).pvalue > 1e-3
    for key, bound in [("shift", cfg.brightness), ("factor", cfg.contrast)]:
        vals = p[key].numpy() - (1.0 if key == "factor" else 0.0)
        assert np.abs(vals).max() <= bound and stats.kstest(vals / bound, "uniform", args=(-1, 2)).pvalue > 1e-3


def test_same_seed_same_batch_and_other_seeds_differ():
    img, mask = _image()
    x = torch.from_numpy(img).expand(8, 1, *img.shape).clone()
    m = torch.from_numpy(mask).expand(8, 1, *img.shape).clone()
    aug = DeviceAugment(AugmentConfig(noise=1.0))
    a = aug(x, m, torch.Generator().manual_seed(5))
    b = aug(x, m, torch.Generator().manual_seed(5))
    c = aug(x, m, torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert not torch.equal(a[0][0], a[0][1])  # per-sample parameters and noise, not one per batch
    assert step_generator(0, 1).initial_seed() != step_generator(1, 0).initial_seed()


class _Slices(torch.utils.data.Dataset):
    """Eight fixed (1, 16, 12) slices with masks."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, key):
        i = key[1] if isinstance(key, tuple) else key
        g = torch.Generator().manual_seed(i)
        return {"image": torch.rand(1, 16, 12, generator=g), "mask": (torch.rand(1, 16, 12, generator=g) > 0.8).float()}


class _Recorder:
    """A strategy that records the (augmented) images it is given at each step."""

    def __init__(self) -> None:
        self.student = nn.Linear(16 * 12, 1)
        self.seen: dict[int, torch.Tensor] = {}

    def loss(self, batch, step):
        self.seen[step] = batch["image"].clone()
        return {"loss": self.student(batch["image"].flatten(1)).square().mean()}


def _fit(out: Path, steps: int) -> _Recorder:
    strategy = _Recorder()
    cfg = TrainConfig(steps=steps, batch_size=4, ckpt_every=2, out_dir=str(out), progress=False, tensorboard=False,
                      device="cpu", augment_on="device")  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the resumed run's longer `steps` is a (wanted) config change
        fit(strategy.student, strategy, _Slices(), cfg, batch_transform=BatchAugment(AugmentConfig(), seed=3))
    return strategy


def test_resumed_run_augments_each_step_as_the_uninterrupted_one(tmp_path):
    whole = _fit(tmp_path / "whole", 4)
    _fit(tmp_path / "cut", 2)
    resumed = _fit(tmp_path / "cut", 4)  # continues from the step-2 checkpoint
    assert sorted(resumed.seen) == [2, 3]
    for step in (2, 3):
        assert torch.equal(resumed.seen[step], whole.seen[step])
    plain = _Slices()
    assert not torch.equal(whole.seen[0], torch.stack([plain[i]["image"] for i in range(4)]))  # augmented at all


def test_train_cli_with_augment_on_device(tmp_path):
    from breastssl.cli import main
    from breastssl.data.synth.run import run_synth

    data = tmp_path / "dbt"
    run_synth("dbt", data, n=4, seed=0, fmt="npy", quiet=True)
    sets = [f"data.manifest={data / 'manifest.csv'}", "data.image_size=[32,24]", "train.steps=2", "train.batch_size=4",
            "train.augment_on=device", "data.test_split=train", "train.progress=false", "train.tensorboard=false",
            f"train.out_dir={tmp_path / 'run'}", "model.decoder_width=8"]  # fmt: skip
    args = ["train", "--config", str(CONFIG)]
    for item in sets:
        args += ["--set", item]
    assert main(args) == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["augment_on"] == "device"
