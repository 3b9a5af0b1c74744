"""The lessee client library: deploy functions and invoke them.

`AsyncClient` is the real client; `Client` is a thread-safe synchronous wrapper for scripts, notebooks
and the CLI; `Executor` is the network as a `concurrent.futures.Executor` over a `Client`.
"""

from p2pfaas.client.async_client import AsyncClient
from p2pfaas.client.executor import Executor
from p2pfaas.client.outcome import InvokeOutcome
from p2pfaas.client.sync import Client

__all__ = ["AsyncClient", "Client", "Executor", "InvokeOutcome"]
