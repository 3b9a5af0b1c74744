"""The lessee client library: deploy functions and invoke them.

`AsyncClient` is the real client; `Client` is a thread-safe synchronous wrapper for scripts,
notebooks and the CLI; `Executor` is the network as a `concurrent.futures.Executor` over a `Client`,
`AsyncExecutor` the same as asyncio tasks over an `AsyncClient` (both on `calls.Calls`);
`Callables` runs plain Python callables (packed by value, results never unpickled) over an
`AsyncClient`.
"""

from p2pfaas.client.async_client import AsyncClient
from p2pfaas.client.async_executor import AsyncExecutor
from p2pfaas.client.callables import Callables
from p2pfaas.client.executor import Executor
from p2pfaas.client.outcome import InvokeOutcome
from p2pfaas.client.sync import Client

__all__ = ["AsyncClient", "AsyncExecutor", "Callables", "Client", "Executor", "InvokeOutcome"]
