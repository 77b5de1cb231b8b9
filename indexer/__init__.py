"""The indexer: Kafka to OpenSearch with idempotent bulk writes."""
