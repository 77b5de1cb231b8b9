"""TLS and SASL settings for Kafka clients, shared by the shipper's producer and
the indexer's consumer, so both reach a secured cluster the same way.

Passwords come from the value, a file (a mounted Secret, which wins), or a
``PODLOG_*`` environment override; they are never printed: the config's
``repr`` masks them and errors name the setting, not the value.
"""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path
from typing import Any, Literal

from aiokafka.helpers import create_ssl_context

from podlog.config import setting
from podlog.errors import TransportError

__all__ = ["KafkaSecurityConfig", "security_kwargs"]


@dataclasses.dataclass(frozen=True, slots=True, repr=False)
class KafkaSecurityConfig:
    """How a Kafka client authenticates and encrypts; inherited by the client configs."""

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = setting(
        "PLAINTEXT", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = setting(
        "PLAIN", "SASL mechanism when security_protocol uses SASL."
    )
    sasl_username: str = setting("", "SASL user name.")
    sasl_username_file: str = setting("", "File holding the SASL user name (wins over sasl_username).")
    sasl_password: str = setting(
        "", "SASL password; prefer sasl_password_file or the environment.", secret=True
    )
    sasl_password_file: str = setting(
        "", "File holding the SASL password (a mounted Secret); wins over sasl_password."
    )
    ssl_cafile: str = setting("", "CA bundle that verifies the brokers' certificates.")
    ssl_certfile: str = setting("", "Client certificate (PEM) for mutual TLS.")
    ssl_keyfile: str = setting("", "Client private key (PEM) for mutual TLS.")
    ssl_check_hostname: bool = setting(True, "Verify that broker certificates match their host names.")

    def __repr__(self) -> str:
        # Written by hand so a logged or printed config never shows a secret.
        fields = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("secret") and value:
                value = "***"
            fields.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(fields)})"


def _read_secret(path: str, setting_name: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise TransportError(
            f"cannot read {setting_name} {path}: {exc.strerror}", retriable=False, setting=setting_name
        ) from exc


def security_kwargs(config: KafkaSecurityConfig, section: str) -> dict[str, Any]:
    """aiokafka client keyword arguments for ``config``.

    ``section`` is the settings path of ``config`` (``"shipper.kafka"``); a
    TLS file that cannot be loaded or a SASL user that is missing raises a
    non-retriable :class:`TransportError` naming the setting.
    """
    kwargs: dict[str, Any] = {"security_protocol": config.security_protocol}
    if config.security_protocol in ("SSL", "SASL_SSL"):
        try:
            context = create_ssl_context(
                cafile=config.ssl_cafile or None,
                certfile=config.ssl_certfile or None,
                keyfile=config.ssl_keyfile or None,
            )
        except (OSError, ssl.SSLError) as exc:
            raise TransportError(
                f"cannot load TLS files ({section}.ssl_cafile / ssl_certfile / ssl_keyfile): {exc}",
                retriable=False,
                setting=f"{section}.ssl_cafile",
            ) from exc
        context.check_hostname = config.ssl_check_hostname
        kwargs["ssl_context"] = context
    if config.security_protocol.startswith("SASL"):
        username = (
            _read_secret(config.sasl_username_file, f"{section}.sasl_username_file")
            if config.sasl_username_file
            else config.sasl_username
        )
        password = (
            _read_secret(config.sasl_password_file, f"{section}.sasl_password_file")
            if config.sasl_password_file
            else config.sasl_password
        )
        if not username:
            raise TransportError(
                f"{section}.sasl_username is empty but security_protocol is {config.security_protocol}",
                retriable=False,
                setting=f"{section}.sasl_username",
            )
        kwargs.update(
            sasl_mechanism=config.sasl_mechanism,
            sasl_plain_username=username,
            sasl_plain_password=password,
        )
    return kwargs
