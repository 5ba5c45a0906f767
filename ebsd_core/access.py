"""Shared-password access for small labs: scrypt hashes, constant-time checks, no password in the repo.

The hosted dashboard reads ``[access] password_hash`` from ``.streamlit/secrets.toml``
(git-ignored). Make the hash with ``python -m ebsd_core hash-password``. Labs with
an identity provider configure Streamlit's OIDC login (``[auth]``) instead.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from ebsd_core.errors import InputError

SCHEME = "scrypt"
N, R, P = 2**14, 8, 1
DIGEST_BYTES = 32  # about 50 ms and 16 MB per check: cheap for a login, costly for guessing


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64) for the secrets file."""
    if len(password) < 8:
        raise InputError("choose a password of at least 8 characters")
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, dklen=DIGEST_BYTES)
    encode = base64.b64encode
    return f"{SCHEME}${N}${R}${P}${encode(salt).decode()}${encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches a hash made by :func:`hash_password`; malformed hashes never match."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != SCHEME:
            return False
        expected = base64.b64decode(digest, validate=True)
        if len(expected) != DIGEST_BYTES:
            return False
        actual = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError, MemoryError):
        return False
    return hmac.compare_digest(actual, expected)
