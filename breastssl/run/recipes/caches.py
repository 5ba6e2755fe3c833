"""A recipe's ``data.cache``: a ``breastssl cache`` folder checked against what the recipe would compute itself."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ...errors import ConfigError, DataError

BUILD = {"dbt": "breastssl cache --mode dbt --size {h} {w}", "prepare": "breastssl cache --size {h} {w}"}


def open_cache(path: str, mode: str, size: tuple[int, int], manifest: pd.DataFrame, recipe: str) -> Any:
    """The cache ``path``, checked to hold ``mode``'s arrays (``dbt``: ``load_stack``'s stacks; ``prepare``: the
    mammography ``prepare_row`` arrays, breast-cropped) at ``size`` for every row of ``manifest``: a config error
    naming what differs (and the command that builds the right one), or a data error naming missing rows."""
    from ...data.cache import CacheReader

    reader = CacheReader(path)
    have = (reader.mode, tuple(reader.params.get("size", ())))
    need = BUILD[mode].format(h=size[0], w=size[1])
    if have != (mode, tuple(size)):
        raise ConfigError(f"data.cache {path}: built with mode {have[0]!r} at size {list(have[1])}; the {recipe} "
                          f"recipe needs `{need}` (data.image_size)")  # fmt: skip
    if mode == "prepare" and not reader.params.get("crop", True):
        raise ConfigError(f"data.cache {path}: built with --no-crop; the {recipe} recipe crops to the breast: `{need}`")
    missing = [i for i in manifest["image_id"].astype(str) if i not in reader]
    if missing:
        raise DataError(f"data.cache {path}: {len(missing)} manifest rows are not in the cache (e.g. {missing[:3]}); "
                        "run `breastssl cache` on this manifest again (it adds only what is missing)")  # fmt: skip
    return reader
