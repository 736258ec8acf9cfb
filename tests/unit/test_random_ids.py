"""Random hex ids cut from a buffer of the kernel's random bytes: well formed, never
handed out twice (across refills, threads and a fork), one read per buffer."""

import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from gateway.context import new_request_id, new_request_key
from gateway.random_ids import BUFFER_BYTES, ID_BYTES, RandomHex

HEX_32 = re.compile(r"[0-9a-f]{32}")


def test_ids_are_128_bit_hex_and_the_request_id_says_req():
    assert HEX_32.fullmatch(new_request_key())
    request_id = new_request_id()
    assert request_id.startswith("req_") and HEX_32.fullmatch(request_id[4:])


def test_no_id_repeats_across_many_refills():
    source = RandomHex()
    ids = [source.take() for _ in range(20 * BUFFER_BYTES // ID_BYTES)]
    assert len(set(ids)) == len(ids)


def test_the_kernel_is_read_once_per_buffer(monkeypatch):
    """128 ids of 16 bytes from one 4 KiB read; the 129th reads again."""
    reads: list[int] = []
    real = os.urandom

    def counting(n: int) -> bytes:
        reads.append(n)
        return real(n)

    monkeypatch.setattr(os, "urandom", counting)
    source = RandomHex()
    for _ in range(BUFFER_BYTES // ID_BYTES):
        source.take()
    assert reads == [BUFFER_BYTES]
    source.take()
    assert reads == [BUFFER_BYTES, BUFFER_BYTES]


def test_threads_never_share_an_id():
    source = RandomHex()
    barrier = threading.Barrier(8)

    def many(_: int) -> list[str]:
        barrier.wait()
        return [source.take() for _ in range(3000)]

    with ThreadPoolExecutor(8) as pool:
        ids = [i for chunk in pool.map(many, range(8)) for i in chunk]
    assert len(set(ids)) == len(ids) == 24_000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_does_not_hand_out_its_parents_ids():
    """The child forgets the parent's buffer: its next ids are not the parent's next."""
    new_request_key()  # the parent's buffer holds unused bytes now
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ten ids, then out at once
        try:
            os.write(write_end, "".join(new_request_key() for _ in range(10)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child = pipe.read().decode()
    os.waitpid(pid, 0)
    parent = [new_request_key() for _ in range(10)]
    child_ids = {child[i : i + 32] for i in range(0, len(child), 32)}
    assert len(child_ids) == 10 and not child_ids & set(parent)
