"""`python -m p2pfaas` is the `p2pfaas` command."""

from p2pfaas.cli import main

raise SystemExit(main())
