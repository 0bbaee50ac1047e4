"""Object storage for the data directory: S3 with Object Lock, behind the ledger's seam.

``settings`` parses ``s3://BUCKET/PREFIX`` and the standard AWS settings; ``s3`` is the
:class:`~audit_pipeline.ledger.storage.ObjectStore` over boto3 (create-only, checksummed,
COMPLIANCE-retained writes, version listings); ``readers`` gives pyarrow a read-only view;
``seaweedfs`` starts a local S3 server with Object Lock for tests and the local stack.
Nothing here imports Dagster; the ledger never imports this package.
"""
