"""What the SpillStore, CompressedStore and pool tests share: the values they round-trip, and a race."""

from __future__ import annotations

import array
import threading
from collections.abc import Callable

from hypothesis import strategies as st

#: Values both LRU stores must read back bit-identical: buffers, text (lone surrogates too), arrays
#: and picklable nested containers.
values = st.one_of(
    st.binary(max_size=4096),
    st.binary(max_size=2048).map(bytearray),
    st.text(max_size=2048),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=50),
    st.lists(st.integers(-(2**31), 2**31 - 1), max_size=500).map(lambda xs: array.array("i", xs)),
    st.lists(st.floats(allow_nan=False), max_size=200).map(lambda xs: array.array("d", xs)),
    st.recursive(
        st.none() | st.integers() | st.text(max_size=20) | st.booleans(),
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=5),
        max_leaves=30,
    ),
)


def same(a: object, b: object) -> bool:
    """Equal and of the same type."""
    return type(a) is type(b) and a == b


def race(background: Callable[[], object], workers: list[threading.Thread]) -> None:
    """Run *workers* to their end while another thread calls ``background()`` over and over."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            background()

    looper = threading.Thread(target=loop)
    looper.start()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    stop.set()
    looper.join()
