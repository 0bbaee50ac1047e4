"""Witnesses: independent cosigners of the ledger's checkpoints (C2SP tlog-witness).

``server`` and ``state`` are the witness itself (run elsewhere, with its own key and state);
``config`` reads which witnesses the pipeline asks and the quorum it needs; ``committer``
asks them after each commit and keeps their cosignatures beside the log's checkpoints. The
formats verifiers need offline live in ``audit_pipeline.ledger.cosignature`` and
``audit_pipeline.ledger.witnessed``.
"""
