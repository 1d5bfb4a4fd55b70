"""Fault tests: the bridge process against a fault-injecting Streams double and real brokers."""
