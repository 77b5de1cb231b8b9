"""Search: the HTTP API and web page over OpenSearch or the embedded index."""
