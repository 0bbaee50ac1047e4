"""The dataset's errors, apart from the builder so that readers need not import it."""

from __future__ import annotations

from audit_pipeline.errors import AuditPipelineError, ConfigurationError


class DatasetIntegrityError(AuditPipelineError):
    """The ledger did not verify, or changed while the dataset was read: nothing published."""

    exit_code = 1


class DatasetMissingError(ConfigurationError):
    """There is no dataset file yet."""
