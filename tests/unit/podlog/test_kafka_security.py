"""Kafka TLS/SASL settings shared by the shipper's producer and the indexer's consumer."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.config import IndexerConfig, KafkaConsumerConfig
from indexer.consumer import Indexer
from podlog.config import CommonConfig
from podlog.errors import TransportError
from podlog.kafka_security import KafkaSecurityConfig, security_kwargs
from podlog.lifecycle import Health
from podlog.retention import RetentionConfig
from podlog.settings import load_settings


def test_plaintext_needs_no_credentials() -> None:
    """The default is PLAINTEXT with nothing else passed to the client."""
    assert security_kwargs(KafkaSecurityConfig(), "x.kafka") == {"security_protocol": "PLAINTEXT"}


def test_files_win_over_values_and_repr_masks_the_password(tmp_path: Path) -> None:
    """User and password files (mounted Secrets) win; repr never shows the password."""
    (tmp_path / "user").write_text("from-file\n")
    (tmp_path / "password").write_text("s3cret-file\n")
    config = KafkaSecurityConfig(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="from-value",
        sasl_username_file=str(tmp_path / "user"),
        sasl_password="s3cret-value",
        sasl_password_file=str(tmp_path / "password"),
    )
    kwargs = security_kwargs(config, "x.kafka")
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("from-file", "s3cret-file")
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert "s3cret" not in repr(config)


@pytest.mark.parametrize(
    ("config", "setting"),
    [
        (KafkaSecurityConfig(security_protocol="SASL_SSL"), "x.kafka.sasl_username"),
        (
            KafkaSecurityConfig(security_protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password_file="/nope"),
            "x.kafka.sasl_password_file",
        ),
        (KafkaSecurityConfig(security_protocol="SSL", ssl_cafile="/nope/ca.pem"), "x.kafka.ssl_cafile"),
    ],
)
def test_bad_security_settings_name_the_setting(config: KafkaSecurityConfig, setting: str) -> None:
    """Each misconfiguration is a non-retriable error naming its setting."""
    with pytest.raises(TransportError) as caught:
        security_kwargs(config, "x.kafka")
    assert caught.value.setting == setting
    assert not caught.value.retriable


def test_indexer_reads_the_same_security_settings() -> None:
    """indexer.kafka takes the same TLS/SASL keys as shipper.kafka, from YAML or the environment."""
    settings = load_settings(
        environ={
            "PODLOG_INDEXER__KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
            "PODLOG_INDEXER__KAFKA__SASL_USERNAME": "indexer",
            "PODLOG_SHIPPER__KAFKA__SASL_MECHANISM": "SCRAM-SHA-256",
        }
    )
    assert settings.indexer.kafka.security_protocol == "SASL_SSL"
    assert settings.indexer.kafka.sasl_username == "indexer"
    assert settings.shipper.kafka.sasl_mechanism == "SCRAM-SHA-256"


async def test_indexer_start_names_its_missing_sasl_user() -> None:
    """An indexer told to use SASL without a user fails at start naming indexer.kafka.sasl_username."""
    config = IndexerConfig(kafka=KafkaConsumerConfig(security_protocol="SASL_PLAINTEXT"))
    indexer = Indexer(CommonConfig(), config, RetentionConfig(), health=Health())
    with pytest.raises(TransportError) as caught:
        await indexer.start()
    assert caught.value.setting == "indexer.kafka.sasl_username"
