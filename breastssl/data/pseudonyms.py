"""Keyed pseudonyms for patient and site identifiers (DICOM PS3.15: not reversible without a secret).

An unsalted hash of a PatientID is reversible by enumeration (7-digit IDs take under a second), so the
identifiers a person could guess (PatientID, InstitutionName) are pseudonymised with HMAC-SHA256 under a
project key the user keeps. The key is 32 random bytes stored as hex in a file readable by its owner only;
it is created on first use and never written into any output. The same key gives the same IDs (ingest
runs can be merged and labels joined later); another key gives unrelated IDs.

Where the key lives: ``--key-file PATH``, else ``$BREASTSSL_PSEUDONYM_KEY``, else
``$XDG_CONFIG_HOME/breastssl/pseudonym.key`` (``~/.config/breastssl/pseudonym.key``).
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

from ..errors import UserError

KEY_ENV = "BREASTSSL_PSEUDONYM_KEY"
KEY_BYTES = 32
MIN_KEY_BYTES = 16
ID_HEX = 16  # 64 bits: collisions stay negligible for millions of patients


@dataclass(frozen=True)
class PseudonymKey:
    """A project key and where it came from; ``created`` is True when this run wrote the file."""

    secret: bytes
    path: Path | None
    created: bool = False

    def __repr__(self) -> str:  # never show the secret in logs or tracebacks
        return f"PseudonymKey(path={self.path!s}, created={self.created})"

    def pseudonym(self, value: Any, prefix: str) -> str:
        """``prefix-`` + 16 hex digits of HMAC-SHA256(key, value)."""
        digest = hmac.new(self.secret, str(value).encode("utf-8"), sha256).hexdigest()
        return f"{prefix}-{digest[:ID_HEX]}"


def default_key_path() -> Path:
    """``$BREASTSSL_PSEUDONYM_KEY``, else the user's config folder (``~/.config/breastssl/pseudonym.key``)."""
    env = os.environ.get(KEY_ENV)
    if env:
        return Path(env).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config).expanduser() / "breastssl" / "pseudonym.key"


def ephemeral_key() -> PseudonymKey:
    """A random key kept in memory only: for callers that need rows but never write patient IDs (predict)."""
    return PseudonymKey(secrets.token_bytes(KEY_BYTES), None)


def load_key(path: str | Path | None = None, create: bool = True) -> PseudonymKey:
    """Read the key at ``path`` (default: :func:`default_key_path`), creating it (mode 0600) if missing."""
    path = Path(path).expanduser() if path is not None else default_key_path()
    if path.is_dir():
        raise UserError(f"--key-file {path}: is a folder; give the path of the key file")
    if not path.exists():
        if not create:
            raise UserError(f"--key-file {path}: does not exist")
        return PseudonymKey(_create(path), path, created=True)
    return PseudonymKey(_read(path), path)


def _read(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--key-file {path}: cannot be read as a pseudonym key ({type(exc).__name__})") from None
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) < MIN_KEY_BYTES:
        # the message never echoes the file's content: it may be a secret pasted into the wrong file
        raise UserError(
            f"--key-file {path}: not a pseudonym key (expected at least {2 * MIN_KEY_BYTES} hex digits, "
            "as written by `breastssl ingest` on first use)"
        )
    return secret


def _create(path: Path) -> bytes:
    """Write a new random key readable by its owner only; if another process wins the race, use its key."""
    secret = secrets.token_bytes(KEY_BYTES)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secret.hex() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # fails if the key appeared meanwhile: never replace a key in use
        except FileExistsError:
            return _read(path)
        except OSError:  # a file system without hard links: a plain rename, still never over an existing key
            if path.exists():
                return _read(path)
            os.replace(tmp, path)
    except OSError as exc:
        raise UserError(f"--key-file {path}: cannot create the pseudonym key ({exc.strerror or exc})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return secret
