"""`python -m claims_service.cli ...`, as the `claimsctl` script."""

import sys

from claims_service.cli.main import main

sys.exit(main())
