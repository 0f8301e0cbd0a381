"""Parquet schema, atomic shard writer and DuckDB catalog of a talkset dataset root."""
