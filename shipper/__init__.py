"""The shipper: a durable spool and delivery to Kafka or the embedded index."""
