"""audit_pipeline: tamper-evident Slack Enterprise Grid audit logs.

Layers, bottom to top (imports point downwards only):
``ledger`` (Merkle trees, signed manifests, checkpoints; stdlib + cryptography),
``slack`` (Audit Logs API client, emulator, generator), ``lake`` (schema, normalization,
Parquet), ``ingest`` (sync: slack -> lake -> ledger), ``dataset`` (DuckDB), and on top the
Dagster definitions (``defs``) and the command line (``cli``).
"""

__version__ = "0.1.0"
