"""Shared-password access for small labs: scrypt hashes, constant-time checks, no password in the repo.

The hosted dashboard reads ``[access] password_hash`` from ``.streamlit/secrets.toml``
(git-ignored). Make the hash with ``python -m ebsd_core hash-password``. Labs with
an identity provider configure Streamlit's OIDC login (``[auth]``) instead.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import hmac
import os
import socket
import time
import tomllib
from pathlib import Path

from ebsd_core.errors import InputError
from ebsd_core.wording import is_whole_number

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


#: How long a browser let in with the lab's password stays in, when its visitor asks to be kept in.
KEEP_IN_DAYS = 7
#: The cookie that keeps a browser in (:func:`keep_in_token`).
KEEP_IN_COOKIE = "ebsd_fewshot_access"


def _keep_in_mac(password_hash: str, expiry: int) -> str:
    # keyed by the stored hash (its salt is secret): a new password lets no browser kept in with the old one back in
    key = hashlib.sha256(b"ebsd-fewshot keep-in\0" + password_hash.encode()).digest()
    mac = hmac.new(key, str(expiry).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def keep_in_token(password_hash: str, days: float = KEEP_IN_DAYS, now: float | None = None) -> str:
    """``EXPIRY.MAC``: what a browser let in with the password keeps as a cookie, so that a reload or a new tab is not
    asked again until ``EXPIRY`` (Unix seconds)."""
    expiry = int((time.time() if now is None else now) + days * 86400)
    return f"{expiry}.{_keep_in_mac(password_hash, expiry)}"


def keeps_in(token: str, password_hash: str, now: float | None = None) -> bool:
    """Whether ``token`` (made by :func:`keep_in_token` with this password hash) still lets its browser in."""
    expiry, _, mac = str(token).partition(".")
    # a forged cookie's "²²²" ended the page in a traceback
    if not is_whole_number(expiry) or int(expiry) < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(mac, _keep_in_mac(password_hash, int(expiry)))


#: The address ``make app`` serves on where no visitor is asked for anything: this computer alone.
LOCAL_ONLY = "127.0.0.1"


#: The environment variable that tells ``streamlit run`` its secrets files (paths split at white space), over the
#: config file's ``[secrets] files``.
SECRETS_FILES_VARIABLE = "STREAMLIT_SECRETS_FILES"


def secrets_files(project: Path) -> list[Path]:
    """Where Streamlit reads its secrets for the dashboard in ``project``: the files :data:`SECRETS_FILES_VARIABLE`
    or its ``.streamlit/config.toml`` (``[secrets] files``) names, else the account's global file and the
    project's."""
    if named := os.environ.get(SECRETS_FILES_VARIABLE, "").split():
        return [project / Path(name).expanduser() for name in named]
    try:
        config = tomllib.loads((project / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
        named = config.get("secrets", {}).get("files")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, AttributeError):
        named = None
    if named:
        return [project / Path(name).expanduser() for name in named]
    return [Path.home() / ".streamlit" / "secrets.toml", project / ".streamlit" / "secrets.toml"]


def asks_who_visits(files: list[Path]) -> bool:
    """Whether the dashboard asks each visitor for the lab's password (``[access] password_hash``) or a login
    (``[auth]``) with these secrets files; a file that cannot be read or parsed asks nothing (Streamlit then refuses
    to start, naming it)."""
    for file in files:
        try:
            secrets = tomllib.loads(file.read_text(encoding="utf-8"))  # TOML is UTF-8
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue
        access = secrets.get("access")
        if secrets.get("auth") or (isinstance(access, dict) and access.get("password_hash")):
            return True
    return False


def listen_address(project: Path | None = None) -> str:
    """The address ``make app`` serves on: every network interface (Streamlit's default, "") where the dashboard asks
    each visitor for a password or a login, else this computer alone (:data:`LOCAL_ONLY`).

    Streamlit listens on every interface by default: a ``make app`` on a lab's PC, with no password set, served
    anyone on the network, who could upload, train and delete models."""
    project = project or Path.cwd()
    return "" if asks_who_visits(secrets_files(project)) else LOCAL_ONLY


def taken_port_problem(port: str, address: str = "") -> str | None:
    """Why ``make app`` cannot serve on ``port`` at ``address`` ("": every interface), where another program listens
    there: Streamlit said only "Port 8501 is not available" to a teacher whose first ``make app`` still ran in another
    terminal. None where it is free, or where the problem is another (Streamlit says it then)."""
    if not is_whole_number(port):
        return None
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server binds: a closed one's port is free
        try:
            probe.bind((address, int(port)))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return None
            return (
                f"Port {port} is taken by another program on this computer (a dashboard started before, in another "
                f"terminal?): open http://localhost:{port} to use that one, stop it (README: Stopping it), or run "
                f"make app PORT={int(port) + 1}"
            )
    return None
