"""The lessee client library: deploy functions and invoke them.

`AsyncClient` is the real client; `Client` is a thin synchronous wrapper for scripts and the CLI.
"""

from p2pfaas.client.async_client import AsyncClient
from p2pfaas.client.outcome import InvokeOutcome
from p2pfaas.client.sync import Client

__all__ = ["AsyncClient", "Client", "InvokeOutcome"]
