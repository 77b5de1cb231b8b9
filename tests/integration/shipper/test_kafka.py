"""KafkaTransport and Shipper against a real broker, read back with librdkafka."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from podlog.errors import TransportError
from podlog.lifecycle import Health
from podlog.protocols import Batch
from podlog.record import Record, stream_key
from shipper import recordbatch
from shipper.config import KafkaProducerConfig, ShipperConfig, SpoolConfig
from shipper.kafka import KafkaTransport
from shipper.shipper import Shipper
from shipper.spool import Spool
from tests.fixtures.servers import ManagedProcess, free_port, tansu_binary, wait_for_port
from tests.integration.shipper.readback import read_topic
from tests.integration.shipper.running import running, unique_topic, until
from tests.unit.shipper.helpers import RecordingAcks, batch, lines, record


async def test_records_read_back_by_librdkafka_match_the_spool(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """What the spool held arrives in Kafka intact, each container stream in order."""
    topic = unique_topic("readback")
    config = ShipperConfig(kafka=KafkaProducerConfig(bootstrap_servers=kafka_bootstrap, topic=topic))
    spool = Spool(config.spool, tmp_path / "spool")
    acks = RecordingAcks()
    shipper = Shipper(config, spool, KafkaTransport(config.kafka), acks=acks, health=Health())
    spooled: list[Record] = []
    async with running(shipper):
        for i in range(40):
            for stream, pod in (("app", "a"), ("sidecar", "a"), ("app", "b")):
                b = batch(stream, i * 10, 10, pod=pod)
                spooled.extend(b.records)
                await spool.append(b)
        await until(lambda: spool.records == 0)
    content = read_topic(kafka_bootstrap, topic, expect_ids=len(spooled))
    by_id = {r["event"]["id"]: r for rs in content.by_key.values() for r in rs}
    assert len(by_id) == len(spooled) == 1200
    assert lines([by_id[r["event"]["id"]] for r in spooled]) == lines(spooled)
    assert all(by_id[r["event"]["id"]]["podlog"]["schema"] == 2 for r in spooled)
    for key in {stream_key(r) for r in spooled}:
        expected = [r["log"]["offset"] for r in spooled if stream_key(r) == key]
        assert content.first_seen_offsets(key) == expected
    assert acks.offset("a:app:x") == 400


async def test_idempotence_auto_falls_back_with_one_warning(kafka_bootstrap: str) -> None:
    """On a broker without InitProducerId, auto mode warns once and produces without it."""
    transport = KafkaTransport(KafkaProducerConfig(bootstrap_servers=kafka_bootstrap, topic=unique_topic("idem")))
    with capture_logs() as logs:
        await transport.start()
    try:
        await transport.send([record("c", 0)])
    finally:
        await transport.stop()
    warnings = [e for e in logs if e["event"] == "idempotence_disabled"]
    if transport.idempotent:
        assert warnings == []  # a broker with idempotence support: nothing to warn about
    else:
        assert len(warnings) == 1
        assert warnings[0]["log_level"] == "warning"


async def test_idempotence_on_without_broker_support_names_the_setting(
    kafka_bootstrap: str, kafka_backend: str
) -> None:
    """idempotence: on against a broker without it fails with an error naming the setting."""
    if kafka_backend != "tansu":
        pytest.skip("only tansu lacks InitProducerId")
    transport = KafkaTransport(
        KafkaProducerConfig(bootstrap_servers=kafka_bootstrap, idempotence="on", topic="x")
    )
    with pytest.raises(TransportError) as caught:
        await transport.start()
    assert caught.value.setting == "shipper.kafka.idempotence"
    assert "shipper.kafka.idempotence" in str(caught.value)


async def test_unreachable_broker_names_bootstrap_servers() -> None:
    """Nothing listening at the bootstrap address gives a retriable error naming the setting."""
    address = f"127.0.0.1:{free_port()}"
    transport = KafkaTransport(
        KafkaProducerConfig(bootstrap_servers=address, connect_timeout_seconds=10)
    )
    with pytest.raises(TransportError) as caught:
        await transport.start()
    assert caught.value.setting == "shipper.kafka.bootstrap_servers"
    assert caught.value.retriable
    assert address in str(caught.value) and "shipper.kafka.bootstrap_servers" in str(caught.value)


@pytest.fixture
def tansu_with_authentication(tmp_path: Path) -> Iterator[str]:
    """A tansu broker that requires SASL authentication (no users are defined)."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log_path = tmp_path / "tansu-auth.log"
    with log_path.open("wb") as log_file:
        popen = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--authentication"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    proc = ManagedProcess(name="tansu-auth", popen=popen, log_path=log_path)
    try:
        wait_for_port(port, process=proc)
        yield f"127.0.0.1:{port}"
    finally:
        proc.stop()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
async def test_wrong_password_names_the_sasl_setting_and_hides_the_secret(
    tansu_with_authentication: str, mechanism: str, tmp_path: Path
) -> None:
    """A rejected login is a non-retriable error naming the SASL settings, never the password."""
    secret = tmp_path / "password"
    secret.write_text("hunter2-not-this-one\n")
    transport = KafkaTransport(
        KafkaProducerConfig(
            bootstrap_servers=tansu_with_authentication,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism=mechanism,  # type: ignore[arg-type]
            sasl_username="podlog",
            sasl_password_file=str(secret),
            connect_timeout_seconds=10,
        )
    )
    with capture_logs() as logs, pytest.raises(TransportError) as caught:
        await transport.start()
    assert caught.value.setting == "shipper.kafka.sasl_password"
    assert not caught.value.retriable
    assert "shipper.kafka.sasl_password" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(logs)
    assert [e for e in logs if e["event"] == "idempotence_disabled"] == []  # not mistaken for it


async def test_missing_password_file_names_the_setting(tmp_path: Path) -> None:
    """A password file that cannot be read is an error naming sasl_password_file."""
    transport = KafkaTransport(
        KafkaProducerConfig(
            security_protocol="SASL_PLAINTEXT",
            sasl_username="podlog",
            sasl_password_file=str(tmp_path / "absent"),
        )
    )
    with pytest.raises(TransportError, match=r"shipper\.kafka\.sasl_password_file"):
        await transport.start()


@pytest.mark.parametrize("compression", ["zstd", "lz4", "gzip", "snappy", "none"])
async def test_every_compression_round_trips(kafka_bootstrap: str, compression: str) -> None:
    """Each supported compression codec delivers records librdkafka can read."""
    topic = unique_topic(f"codec-{compression}")
    transport = KafkaTransport(
        KafkaProducerConfig(
            bootstrap_servers=kafka_bootstrap,
            topic=topic,
            compression=compression,  # type: ignore[arg-type]
        )
    )
    await transport.start()
    try:
        records = [record("c", i, "compress me " * 20) for i in range(50)]
        await transport.send(records)
    finally:
        await transport.stop()
    content = read_topic(kafka_bootstrap, topic, expect_ids=50, timeout=30)
    assert content.first_seen_offsets(stream_key(records[0])) == list(range(50))


async def test_oversized_record_arrives_truncated_and_flagged(kafka_bootstrap: str) -> None:
    """A record above max_message_bytes reaches Kafka cut to size with log.truncated set."""
    topic = unique_topic("big")
    transport = KafkaTransport(
        KafkaProducerConfig(bootstrap_servers=kafka_bootstrap, topic=topic, max_message_bytes=4096)
    )
    await transport.start()
    try:
        await transport.send([record("c", 0, "x" * 20_000), record("c", 1, "small")])
    finally:
        await transport.stop()
    content = read_topic(kafka_bootstrap, topic, expect_ids=2, timeout=30)
    (records,) = content.by_key.values()
    assert [r["log"]["truncated"] for r in records] == [True, False]
    assert 0 < len(records[0]["message"]) < 4096


async def test_spool_left_by_a_previous_run_is_delivered(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Batches spooled while no broker was reachable go out when a later run connects."""
    topic = unique_topic("backlog")
    spool = Spool(SpoolConfig(), tmp_path / "spool")
    for i in range(5):
        await spool.append(batch("c", i * 4, 4))
    await spool.close()
    config = ShipperConfig(kafka=KafkaProducerConfig(bootstrap_servers=kafka_bootstrap, topic=topic))
    spool = Spool(config.spool, tmp_path / "spool")
    acks = RecordingAcks()
    shipper = Shipper(config, spool, KafkaTransport(config.kafka), acks=acks, health=Health())
    async with running(shipper):
        await until(lambda: acks.offset("p:c:x") == 20)
    content = read_topic(kafka_bootstrap, topic, expect_ids=20, timeout=30)
    assert content.first_seen_offsets(stream_key(record("c", 0))) == list(range(20))


@pytest.mark.parametrize("idempotence", ["off", "auto"])
async def test_concurrent_sends_keep_each_stream_in_order(kafka_bootstrap: str, idempotence: str) -> None:
    """Sends started together (the shipper keeps two in flight) reach each partition in call order."""
    topic = unique_topic("order")
    transport = KafkaTransport(
        KafkaProducerConfig(
            bootstrap_servers=kafka_bootstrap,
            topic=topic,
            idempotence=idempotence,  # type: ignore[arg-type]
            max_batch_bytes=16 << 10,  # many batches per send, so sends could interleave
        )
    )
    await transport.start()
    sends = [[record(s, n * 300 + i, "y" * 200) for i in range(300) for s in ("a", "b")] for n in range(4)]
    try:
        await asyncio.gather(*(transport.send(records) for records in sends))
    finally:
        await transport.stop()
    content = read_topic(kafka_bootstrap, topic, expect_ids=2400, timeout=60)
    for stream in ("a", "b"):
        key = stream_key(record(stream, 0))
        assert content.first_seen_offsets(key) == list(range(1200))


async def test_idempotent_producer_numbers_every_batch_and_loses_nothing(
    idempotent_kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With idempotence on, batches framed from the spool carry the producer id and consecutive sequences.

    The broker checks the numbering: a batch whose sequence repeats an earlier
    one is dropped as a duplicate, so a wrong numbering shows as missing records.
    """
    numbered: list[tuple[int, int, int, int]] = []
    real = recordbatch.BuiltBatch._set_producer_state

    def spy(batch: recordbatch.BuiltBatch, producer_id: int, epoch: int, sequence: int) -> None:
        numbered.append((producer_id, epoch, sequence, batch.record_count()))
        real(batch, producer_id, epoch, sequence)

    monkeypatch.setattr(recordbatch.BuiltBatch, "_set_producer_state", spy)
    topic = unique_topic("idem-on")
    transport = KafkaTransport(
        KafkaProducerConfig(
            bootstrap_servers=idempotent_kafka_bootstrap,
            topic=topic,
            idempotence="on",
            max_batch_bytes=16 << 10,  # many batches per send
        )
    )
    await transport.start()
    assert transport.idempotent
    streams = [f"s{i}" for i in range(10)]  # one message per stream per send, several per batch
    sends = [[record(s, n * 10 + i, "y" * 100) for i in range(10) for s in streams] for n in range(4)]
    try:
        await asyncio.gather(*(transport.send(records) for records in sends))
    finally:
        await transport.stop()
    assert sum(messages for *_, messages in numbered) == 4 * len(streams)  # every batch was numbered
    assert max(messages for *_, messages in numbered) > 1
    assert len({(producer_id, epoch) for producer_id, epoch, _, _ in numbered}) == 1
    assert numbered[0][0] >= 0
    content = read_topic(idempotent_kafka_bootstrap, topic, expect_ids=400, timeout=60)
    assert sum(len(records) for records in content.by_key.values()) == 400  # no duplicate either
    for stream in streams:
        assert content.first_seen_offsets(stream_key(record(stream, 0))) == list(range(40))


async def test_an_upgraded_agent_ships_the_schema_1_batches_left_in_its_spool_then_schema_2(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A spool written by an agent of the release before (schema 1), reopened by this one (which
    appends schema 2): every line reaches Kafka once, each stream in file order, and the message
    values are of both schemas, which the indexer reads alike (``podlog.wire.decode_message``)."""
    topic = unique_topic("upgrade")
    old = ShipperConfig(spool=SpoolConfig(schema=1))
    spool = Spool(old.spool, tmp_path / "spool")
    spooled: list[Record] = []
    for i in range(5):
        b = batch("app", i * 10, 10)
        spooled.extend(b.records)
        await spool.append(b)
    await spool.close()
    config = ShipperConfig(kafka=KafkaProducerConfig(bootstrap_servers=kafka_bootstrap, topic=topic))
    spool = Spool(config.spool, tmp_path / "spool")
    for i in range(5, 10):
        b = batch("app", i * 10, 10)
        spooled.extend(b.records)
        await spool.append(b)
    acks = RecordingAcks()
    async with running(Shipper(config, spool, KafkaTransport(config.kafka), acks=acks, health=Health())):
        await until(lambda: spool.records == 0)
    content = read_topic(kafka_bootstrap, topic, expect_ids=len(spooled))
    key = stream_key(spooled[0])
    assert content.first_seen_offsets(key) == [r["log"]["offset"] for r in spooled]
    schemas = [r["podlog"]["schema"] for r in content.by_key[key]]
    assert schemas[:50] == [1] * 50 and set(schemas[50:]) == {2}
    assert acks.offset("p:app:x") == 100


async def test_a_schema_2_message_over_a_lowered_limit_is_split_again_never_dropped(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The spool built its messages for 1 MB; the transport's limit is lower (a broker that said
    MESSAGE_TOO_LARGE halves it): the stored message is split again, every line arrives."""
    topic = unique_topic("resplit")
    config = ShipperConfig(kafka=KafkaProducerConfig(bootstrap_servers=kafka_bootstrap, topic=topic))
    spool = Spool(config.spool, tmp_path / "spool")
    records = [record("app", i * 5000, os.urandom(2000).hex()) for i in range(60)]  # no compression helps
    await spool.append(Batch(records, {}))
    transport = KafkaTransport(config.kafka)
    transport.max_message_bytes = 4096
    async with running(Shipper(config, spool, transport, acks=RecordingAcks(), health=Health())):
        await until(lambda: spool.records == 0)
    content = read_topic(kafka_bootstrap, topic, expect_ids=len(records))
    assert content.messages > 1
    assert lines(content.by_key[stream_key(records[0])]) == lines(records)
