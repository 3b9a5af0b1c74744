"""`Stream`, one end of a tunnel on a relay link: a sender waits for acknowledgements past the window,
a peer that overruns it is caught, and the end comes after every byte sent before it."""

from __future__ import annotations

import asyncio

from p2pfaas import codec
from p2pfaas.relay import wire
from p2pfaas.relay.stream import Stream


class Wire:
    def __init__(self) -> None:
        self.frames: list[codec.Message] = []

    async def put(self, frame: codec.Message) -> None:
        self.frames.append(frame)


async def test_a_sender_stops_at_the_window_and_goes_on_when_acknowledged() -> None:
    link = Wire()
    stream = Stream(5, link.put, window=3 * wire.MAX_CHUNK)
    sending = asyncio.create_task(stream.send(bytes(5 * wire.MAX_CHUNK)))
    await asyncio.sleep(0.01)
    assert not sending.done() and len(link.frames) == 3  # the window is full
    stream.acknowledged(2 * wire.MAX_CHUNK)
    await asyncio.wait_for(sending, 5)
    assert [len(f.data) for f in link.frames if isinstance(f, wire.TunnelData)] == [wire.MAX_CHUNK] * 5


async def test_bytes_are_acknowledged_as_taken_and_the_end_follows_them() -> None:
    link = Wire()
    stream = Stream(2, link.put)
    assert stream.deliver(b"one") and stream.deliver(b"two")
    stream.ended()
    assert [await stream.receive(), await stream.receive(), await stream.receive()] == [b"one", b"two", b""]
    assert await stream.receive() == b""  # and stays ended
    assert link.frames == []  # ended before they were taken: nobody to acknowledge to


async def test_a_peer_that_sends_past_the_window_is_caught_and_a_closed_stream_refuses_to_send() -> None:
    link = Wire()
    stream = Stream(1, link.put, window=10)
    assert stream.deliver(b"x" * 10)
    assert await stream.receive() == b"x" * 10 and link.frames == [wire.TunnelAck(1, 10)]
    assert stream.deliver(b"y" * 10) and not stream.deliver(b"z")  # 11 unacknowledged bytes
    await stream.close("done")
    assert link.frames[-1] == wire.TunnelClose(1, "done")
    await stream.close("again")
    assert link.frames.count(wire.TunnelClose(1, "done")) == 1 and len(link.frames) == 2
    try:
        await stream.send(b"late")
    except ConnectionResetError:
        pass
    else:
        raise AssertionError("a closed stream sent")


async def test_an_honest_sender_never_overruns_a_slow_honest_receiver() -> None:
    """Found by review: the sender waited only while the window was full, so a chunk that did not
    fit what was left (TLS records come in any size) went past it and the receiver dropped the stream."""
    taken: list[bool] = []
    receiver = Stream(1, Wire().put)  # its consumer takes nothing yet

    async def to_receiver(frame: codec.Message) -> None:
        if isinstance(frame, wire.TunnelData):
            taken.append(receiver.deliver(frame.data))

    sender = Stream(1, to_receiver)
    await sender.send(b"x")  # a short record first: later chunks no longer line up with the window
    sending = asyncio.create_task(sender.send(bytes(wire.WINDOW)))
    await asyncio.sleep(0.05)
    assert not sending.done() and taken and all(taken)
    sending.cancel()


async def test_a_stream_dropped_for_an_overrun_still_tells_the_peer() -> None:
    link = Wire()
    stream = Stream(4, link.put, window=10)
    assert not stream.deliver(b"x" * 11)
    stream.drop()
    assert await stream.receive() == b""
    await stream.close("overrun")
    assert link.frames == [wire.TunnelClose(4, "overrun")]  # before, a dropped stream was never closed
