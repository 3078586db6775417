"""Passwords in URLs: shown masked everywhere, sent only where they are needed.

A storage URL (``postgresql://user:PASSWORD@host/db``) or a tracking URI
(``http://user:PASSWORD@host:5000``) may carry a password. :func:`mask_password` is the one
function that writes such a URL into a file, a log, an MLflow record or the terminal. An MLflow
server's user and password are handed to MLflow's client through its environment variables
(:func:`tracking_credentials`), so the URI it prints in its own messages holds none. A resumed
search asks for a masked password again (:func:`resume_url`).
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote

from automl_cnn.errors import UserInputError

MASK = "***"
USERNAME_ENV, PASSWORD_ENV = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"
# scheme://user:password@ : the password runs to the last "@" before any space (a raw "@" or "/"
# in it, which SQLAlchemy accepts, is masked too)
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][\w+.-]*://[^:/@\s]*:)(?P<password>[^\s]*)@")
_QUERY_SECRET = re.compile(r"(?P<head>[?&;](?:password|passwd|pwd|secret|token|access_token)=)[^&;#\s]*", re.I)
_WHERE = re.compile(r"^(?P<scheme>[A-Za-z][\w+.-]*://)(?P<netloc>[^/?#]*)(?P<rest>.*)$", re.S)
# where a masked URL's password can come from instead of the command line
_PASSWORD_ENVS = {"http": PASSWORD_ENV, "https": PASSWORD_ENV, "postgresql": "PGPASSWORD", "postgres": "PGPASSWORD"}


def mask_password(url: str | None) -> str | None:
    """``url`` with its password (and any ``password=``/``token=`` query value) replaced by
    ``***``: the form every file, log and MLflow record holds."""
    if url is None:
        return None
    text = _USERINFO.sub(lambda m: f"{m['head']}{MASK}@", url)
    return _QUERY_SECRET.sub(lambda m: f"{m['head']}{MASK}", text)


def is_masked(url: str | None) -> bool:
    return bool(url) and mask_password(url) == url and MASK in str(url)


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``url`` without its user and password, the user, and the password (percent-decoded);
    the password is None when the URL holds none, or only the mask."""
    m = _WHERE.match(url)
    if m is None or "@" not in m["netloc"]:
        return url, None, None
    userinfo, _, host = m["netloc"].rpartition("@")
    user, sep, password = userinfo.partition(":")
    secret = unquote(password) if sep and password and password != MASK else None
    return f"{m['scheme']}{host}{m['rest']}", unquote(user) or None, secret


def tracking_credentials(uri: str) -> str:
    """An ``http(s)://user:password@host`` tracking URI without its credentials, which go to
    ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` of this process instead (MLflow's
    client sends them as basic auth on every request). Any other URI is returned as it is."""
    if not uri.startswith(("http://", "https://")):
        return uri
    bare, user, password = split_credentials(uri)
    if user is not None:
        os.environ[USERNAME_ENV] = user
    if password is not None:
        os.environ[PASSWORD_ENV] = password
    return bare


def resume_url(saved: str | None, given: str | None, option: str) -> str | None:
    """The URL a resumed search uses: ``given`` (the full URL, passed again with ``option``) when
    given; else the one the run folder kept. A kept URL lost its password to the mask: it is used
    without it when the password's environment variable (``MLFLOW_TRACKING_PASSWORD`` for an MLflow
    server, ``PGPASSWORD`` for PostgreSQL) is set, and refused with the fix otherwise."""
    if given:
        return given
    if not saved or not is_masked(saved):
        return saved
    env = _PASSWORD_ENVS.get(saved.split("://", 1)[0].split("+", 1)[0].lower())
    head, sep, rest = saved.partition(f":{MASK}@")
    if env and os.environ.get(env) and sep and MASK not in rest:
        return f"{head}@{rest}"  # the user stays; the password comes from the environment
    also = f" (or set {env})" if env else ""
    raise UserInputError(
        f"the run folder keeps {saved} without its password; pass {option} with the full URL{also} to resume"
    )
