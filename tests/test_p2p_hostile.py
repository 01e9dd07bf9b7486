"""Hostile peers against a live P2PService.

Raw libp2p hosts (Noise, so they get past the handshake) open streams to a
victim service and send what its parsers cannot take: garbage protobuf on
the gossip stream, a message with a garbage public key, an oversize length
prefix on the direct stream, garbage on a request stream, invalid UTF-8 in
the multistream negotiation, raw bytes on the TCP port. Each of the first
four killed the process as shipped (see p2p.gossip and p2p.engine). After
the attacks the victim must still talk to a healthy peer.
"""

from __future__ import annotations

import asyncio
import json
import random
import struct
import sys
from collections.abc import Awaitable, Callable

import pytest
import trio
from google.protobuf.message import DecodeError
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11
from libp2p.pubsub.pb import rpc_pb2
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport
from libp2p.utils.varint import encode_delim, encode_varint_prefixed

from p2p import P2PConfig, P2PService
from p2p.direct import DIRECT_PROTOCOL
from p2p.host import build_host, listen_multiaddr, parse_peer_address
from p2p.identity import key_pair_from_seed

TOPIC = "txs"
ECHO = "/test/echo/1.0.0"
Action = Callable[[IHost, ID], Awaitable[None]]


async def echo(peer: str, data: bytes) -> bytes:
    return b"echo:" + data


def garbage_rpc(seed: int) -> bytes:
    data = random.Random(seed).randbytes(200)
    try:
        rpc_pb2.RPC().ParseFromString(data)
    except DecodeError:
        return data
    raise AssertionError(f"seed {seed} produced parseable bytes; pick another")


# attacks ---------------------------------------------------------------------


async def gossip_garbage(host: IHost, victim: ID) -> None:
    stream = await host.new_stream(victim, [PROTOCOL_ID_V11])
    await stream.write(encode_varint_prefixed(garbage_rpc(1)))


async def gossip_garbage_key(host: IHost, victim: ID) -> None:
    # from_id is a sha256 multihash (no key inside), so the victim falls back
    # to deserialising msg.key, which is garbage.
    msg = rpc_pb2.Message(
        data=b"x",
        topicIDs=[TOPIC],
        from_id=b"\x12\x20" + b"\x01" * 32,
        seqno=b"\x00" * 8,
        key=b"\xff\xff\xff",
        signature=b"sig",
    )
    stream = await host.new_stream(victim, [PROTOCOL_ID_V11])
    await stream.write(encode_varint_prefixed(rpc_pb2.RPC(publish=[msg]).SerializeToString()))


async def direct_oversize(host: IHost, victim: ID) -> None:
    stream = await host.new_stream(victim, [DIRECT_PROTOCOL])
    await stream.write(struct.pack(">I", 0xFFFFFFFF) + b"A" * 1000)


async def request_garbage(host: IHost, victim: ID) -> None:
    stream = await host.new_stream(victim, [TProtocol(ECHO)])
    await stream.write(struct.pack(">I", 0x7FFFFFFF) + random.Random(2).randbytes(500))


async def request_truncated(host: IHost, victim: ID) -> None:
    stream = await host.new_stream(victim, [TProtocol(ECHO)])
    await stream.write(struct.pack(">I", 100) + b"short")
    await stream.close()


async def multistream_bad_utf8(host: IHost, victim: ID) -> None:
    # A raw muxed stream, no protocol negotiation of our own: the victim's
    # multistream-select reads our "protocol name" and decodes it as UTF-8.
    stream = await host.get_network().new_stream(victim)
    await stream.write(encode_delim(b"/multistream/1.0.0") + encode_delim(b"\xff\xfe/qenex"))


async def multistream_garbage(host: IHost, victim: ID) -> None:
    stream = await host.get_network().new_stream(victim)
    await stream.write(random.Random(3).randbytes(300))


ATTACKS: list[Action] = [
    gossip_garbage,
    gossip_garbage_key,
    direct_oversize,
    request_garbage,
    request_truncated,
    multistream_bad_utf8,
    multistream_garbage,
]


async def _attack(victim_addr: str, seed: bytes, action: Action) -> None:
    info = parse_peer_address(victim_addr)
    listen = listen_multiaddr("127.0.0.1", 0)
    host = build_host(key_pair_from_seed(seed), listen)
    with trio.fail_after(15):
        async with host.run([listen]):
            await host.connect(info)
            await action(host, info.peer_id)
            await trio.sleep(0.3)  # let the victim read it before we hang up


async def run_attacks(victim_addr: str) -> None:
    # A fresh identity per attack (a ban earned by one must not hide the
    # next), all at once, each in its own trio thread.
    await asyncio.gather(
        *(
            asyncio.to_thread(trio.run, _attack, victim_addr, bytes([200 + i]) * 32, action)
            for i, action in enumerate(ATTACKS)
        )
    )


async def raw_tcp_garbage(victim_addr: str) -> None:
    port = int(victim_addr.split("/")[4])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(random.Random(4).randbytes(4096))
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()


# helpers ---------------------------------------------------------------------


async def until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def healthy_peer(victim_addr: str, inbox: list[tuple[str, bytes]]) -> P2PService:
    return P2PService(
        P2PConfig(
            identity_seed=b"\x02" * 32,
            bootstrap=(victim_addr,),
            topics=(TOPIC,),
            redial_interval_s=0.2,
            gossip_heartbeat_s=0.2,
        ),
        on_gossip=lambda topic, peer, data: inbox.append((peer, data)),
        on_direct=lambda peer, data: inbox.append((peer, data)),
        request_handlers={ECHO: echo},
    )


async def check_still_serving(
    victim_addr: str, victim_id: str, victim_gossip: Callable[[], list[bytes]]
) -> None:
    """A healthy peer connects to the victim and exchanges all three kinds
    of traffic with it."""
    inbox: list[tuple[str, bytes]] = []
    peer = healthy_peer(victim_addr, inbox)
    try:
        await peer.start()
        await until(lambda: victim_id in peer.connected_peers(), what="healthy peer connects")
        assert await peer.request(victim_id, ECHO, b"ping") == b"echo:ping"
        for attempt in range(100):  # until the gossip mesh has formed
            await peer.publish(TOPIC, b"gossip-%d" % attempt)
            await asyncio.sleep(0.05)
            if victim_gossip():
                break
        assert victim_gossip(), "victim never received gossip from the healthy peer"
        await peer.send_direct(victim_id, b"direct-after-attacks")
    finally:
        await peer.stop()


# tests -------------------------------------------------------------------------


async def test_victim_survives_garbage_and_still_serves() -> None:
    async def body() -> None:
        gossip: list[bytes] = []
        direct: list[bytes] = []
        victim = P2PService(
            P2PConfig(identity_seed=b"\x01" * 32, topics=(TOPIC,), redial_interval_s=0.2, gossip_heartbeat_s=0.2),
            on_gossip=lambda topic, peer, data: gossip.append(data),
            on_direct=lambda peer, data: direct.append(data),
            request_handlers={ECHO: echo},
        )
        await victim.start()
        try:
            addr = victim.listen_addrs[0]
            await run_attacks(addr)
            await raw_tcp_garbage(addr)
            assert victim.running
            stats = victim.stats()
            # gossip x2, oversize direct, oversize request, utf-8 + garbage
            # negotiation are faults; a truncated request is not.
            assert stats["stream_faults"] >= 5, stats
            assert stats["penalties"] >= 5, stats
            assert stats["gossip_in"] == 0 and direct == []
            await check_still_serving(addr, victim.peer_id, lambda: gossip)
            await until(lambda: direct == [b"direct-after-attacks"], what="direct after attacks")
        finally:
            await victim.stop()

    await asyncio.wait_for(body(), 60)


async def test_repeat_offender_is_banned_and_disconnected() -> None:
    async def body() -> None:
        victim = P2PService(
            P2PConfig(identity_seed=b"\x01" * 32, topics=(TOPIC,)),
            on_gossip=lambda *_: None,
            on_direct=lambda *_: None,
        )
        await victim.start()
        try:
            addr = victim.listen_addrs[0]

            async def repeat(host: IHost, pid: ID) -> None:
                for _ in range(3):  # 3 x 50 points: banned at the second
                    try:
                        await direct_oversize(host, pid)
                    except Exception:
                        return  # disconnected by the victim: expected
                    await trio.sleep(0.2)

            await asyncio.to_thread(trio.run, _attack, addr, b"\x66" * 32, repeat)
            assert victim.stats()["bans"] == 1
            assert victim.stats()["banned_peers"] == 1
        finally:
            await victim.stop()

    await asyncio.wait_for(body(), 30)


async def test_trickled_frame_is_cut_off() -> None:
    """A peer that starts a frame and never finishes it is reset and
    penalised after frame_body_timeout_s."""

    async def trickle(host: IHost, victim: ID) -> None:
        stream = await host.new_stream(victim, [DIRECT_PROTOCOL])
        await stream.write(struct.pack(">I", 1000) + b"partial")
        with trio.fail_after(5):
            try:
                await stream.read(1)
            except Exception:
                return  # reset by the victim: expected
        raise AssertionError("victim did not reset the stream")

    async def body() -> None:
        victim = P2PService(
            P2PConfig(identity_seed=b"\x01" * 32, frame_body_timeout_s=0.5),
            on_gossip=lambda *_: None,
            on_direct=lambda *_: None,
        )
        await victim.start()
        try:
            await asyncio.to_thread(trio.run, _attack, victim.listen_addrs[0], b"\x67" * 32, trickle)
            assert victim.stats()["penalties"] == 1
            assert victim.running
        finally:
            await victim.stop()

    await asyncio.wait_for(body(), 30)


async def test_plaintext_dialer_is_refused() -> None:
    """The victim offers Noise only; a dialer that speaks only
    /plaintext/2.0.0 cannot connect, while a Noise dialer can."""

    async def dial(victim_addr: str, security: str) -> bool:
        info = parse_peer_address(victim_addr)
        key_pair = key_pair_from_seed(b"\x77" * 32)
        listen = listen_multiaddr("127.0.0.1", 0)
        if security == "plaintext":
            host = new_host(
                key_pair=key_pair,
                sec_opt={TProtocol(PLAINTEXT_PROTOCOL_ID): InsecureTransport(key_pair)},
                listen_addrs=[listen],
            )
        else:
            host = build_host(key_pair, listen)
        with trio.fail_after(15):
            async with host.run([listen]):
                try:
                    await host.connect(info)
                except Exception:
                    return False
                return info.peer_id in host.get_connected_peers()

    async def body() -> None:
        victim = P2PService(P2PConfig(identity_seed=b"\x01" * 32), on_gossip=lambda *_: None, on_direct=lambda *_: None)
        await victim.start()
        try:
            network = victim._engine._host.get_network()  # noqa: SLF001 - asserting the wiring
            assert list(network.upgrader.security_multistream.transports) == ["/noise"]
            addr = victim.listen_addrs[0]
            assert await asyncio.to_thread(trio.run, dial, addr, "plaintext") is False
            assert await asyncio.to_thread(trio.run, dial, addr, "noise") is True
            assert victim.running
        finally:
            await victim.stop()

    await asyncio.wait_for(body(), 40)


VICTIM_SCRIPT = r"""
import asyncio, json, sys
from p2p import P2PConfig, P2PService

async def echo(peer, data):
    return b"echo:" + data

def on_gossip(topic, peer, data):
    print(json.dumps({"gossip": data.decode(errors="replace")}), flush=True)

async def main():
    service = P2PService(
        P2PConfig(identity_seed=b"\x01" * 32, topics=("txs",), redial_interval_s=0.2, gossip_heartbeat_s=0.2),
        on_gossip=on_gossip, on_direct=lambda peer, data: None, request_handlers={"/test/echo/1.0.0": echo},
    )
    await service.start()
    print(json.dumps({"addr": service.listen_addrs[0], "peer_id": service.peer_id}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)   # until the test closes stdin
    print(json.dumps({"stats": service.stats(), "running": service.running}), flush=True)
    await service.stop()

asyncio.run(main())
"""


@pytest.mark.slow
async def test_victim_process_survives_garbage() -> None:
    """The same attacks against a victim in its own OS process: the process,
    not just the thread, must stay alive and keep serving."""

    async def body() -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            VICTIM_SCRIPT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        gossip: list[bytes] = []
        lines: asyncio.Queue[dict] = asyncio.Queue()

        async def read_stdout() -> None:
            assert proc.stdout is not None
            async for raw in proc.stdout:
                record = json.loads(raw)
                if "gossip" in record:
                    gossip.append(record["gossip"].encode())
                else:
                    await lines.put(record)

        reader = asyncio.create_task(read_stdout())
        try:
            hello = await asyncio.wait_for(lines.get(), 20)
            addr, victim_id = hello["addr"], hello["peer_id"]
            await run_attacks(addr)
            await raw_tcp_garbage(addr)
            await asyncio.sleep(0.5)
            assert proc.returncode is None, "victim process died"
            await check_still_serving(addr, victim_id, lambda: gossip)
            assert proc.stdin is not None
            proc.stdin.close()
            final = await asyncio.wait_for(lines.get(), 15)
            assert final["running"] is True
            assert final["stats"]["stream_faults"] >= 5, final
            assert await asyncio.wait_for(proc.wait(), 15) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            reader.cancel()

    await asyncio.wait_for(body(), 90)
