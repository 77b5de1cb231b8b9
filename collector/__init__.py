"""The collector: discover, tail, decode and enrich container logs."""
