"""p2pfaas: a peer-to-peer Function-as-a-Service volunteer cloud.

Lessees run signed function bundles on computers that volunteers lend. See README.md for the tour
and ../shared/DESIGN.md for the architecture.
"""

__version__ = "0.1.0"
