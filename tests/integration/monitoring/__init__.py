"""The monitoring component against running podlog processes and a real Prometheus."""
