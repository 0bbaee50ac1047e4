"""``python -m audit_pipeline.cli``: the same as the ``audit-pipeline`` command."""

import sys

from audit_pipeline.cli import main

sys.exit(main())
