"""KafkaTransport settings that fail before any connection, naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from podlog.errors import TransportError
from shipper.config import KafkaProducerConfig
from shipper.kafka import KafkaTransport


async def test_unreadable_ca_file_names_ssl_cafile(tmp_path: Path) -> None:
    """A CA bundle that cannot be loaded is a non-retriable error naming ssl_cafile."""
    transport = KafkaTransport(
        KafkaProducerConfig(security_protocol="SSL", ssl_cafile=str(tmp_path / "missing-ca.pem"))
    )
    with pytest.raises(TransportError) as caught:
        await transport.start()
    assert caught.value.setting == "shipper.kafka.ssl_cafile"
    assert not caught.value.retriable


async def test_sasl_without_a_user_names_sasl_username() -> None:
    """SASL with no user name configured fails at start, naming sasl_username."""
    transport = KafkaTransport(KafkaProducerConfig(security_protocol="SASL_SSL"))
    with pytest.raises(TransportError) as caught:
        await transport.start()
    assert caught.value.setting == "shipper.kafka.sasl_username"


async def test_credentials_come_from_files_and_never_show_in_errors(tmp_path: Path) -> None:
    """User and password files win over the values, and errors never echo the password."""
    user = tmp_path / "user"
    user.write_text("from-file\n")
    password = tmp_path / "password"
    password.write_text("s3cret-from-file\n")
    transport = KafkaTransport(
        KafkaProducerConfig(
            security_protocol="SASL_PLAINTEXT",
            sasl_username="from-value",
            sasl_username_file=str(user),
            sasl_password="s3cret-from-value",
            sasl_password_file=str(password),
        )
    )
    security = transport._security()
    assert security["sasl_plain_username"] == "from-file"
    assert security["sasl_plain_password"] == "s3cret-from-file"
    assert "s3cret" not in repr(transport.config)
    assert "s3cret" not in repr(transport)


def test_config_rejects_tiny_message_limits() -> None:
    """A max_message_bytes too small to hold a record is refused when the config is built."""
    with pytest.raises(ValueError, match="max_message_bytes"):
        KafkaProducerConfig(max_message_bytes=10)
