"""Errors that own their user-facing text, caught once by the CLI."""


class AuditPipelineError(Exception):
    """Base class: the message is what a user sees; ``exit_code`` is what the CLI returns.

    Exit codes: 1 integrity findings, 2 usage or configuration error, 3 could not complete
    (I/O, network, remote API).
    """

    exit_code = 3


class ConfigurationError(AuditPipelineError):
    """Bad configuration or arguments: the user must change something."""

    exit_code = 2
