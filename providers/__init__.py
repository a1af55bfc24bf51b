"""The Provider Layer: Protocols, result types, errors, registry and backends."""
