"""Gradio sessions: each renders a component's config only when it is read, and one whose event
still runs keeps its message queue.

Gradio makes a `SessionState` for every API call that sends no session (every
`/gradio_api/call/classify`) and for every new browser session, and its constructor renders
the config of every component on the page (`BlocksConfig.config_for_block`: props, API info,
an `inspect.signature` per component), about 4 ms for this Space's 68 blocks, on the server's
event loop. A call reads or writes only the configs of its own input and output components
(deep links, `/gradio_api/deep_link`, read them all), so under 64 concurrent API clients the
rest was half the event loop's time. `install_lazy_session_config()` gives every session a
`LazyConfigs` instead: each config rendered from the same block on first read, the same
values whenever they are read.

The installed constructor mirrors the one of the pinned Gradio release; before installing it
is checked against Gradio's own on the real app (`matches_gradio`), and a Gradio whose sessions
differ keeps its own constructor.

`keep_live_sessions(app)` keeps the message queue of a session whose event still runs (a batch
file) when a flood of API calls, each its own session, fills Gradio's bounded cache of them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, MutableMapping
from copy import copy
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import gradio as gr

log = logging.getLogger(__name__)

class LazyConfigs(MutableMapping):
    """A session's component configs by block id, each rendered (`config_for_block`) from the
    block the session started with when it is first read; written ones are kept as written."""

    def __init__(self, blocks_config: Any, blocks: dict[int, Any]):
        self._config = blocks_config
        self._blocks = blocks  # id -> the block as the session started with it
        self._values: dict[int, dict] = {}

    def __getitem__(self, key: int) -> dict:
        if key not in self._values:
            if key not in self._blocks:
                raise KeyError(key)
            self._values[key] = self._config.config_for_block(key, [], self._blocks[key])
        return self._values[key]

    def __setitem__(self, key: int, value: dict) -> None:
        self._values[key] = value

    def __delitem__(self, key: int) -> None:
        if key not in self:
            raise KeyError(key)
        self._values.pop(key, None)
        self._blocks.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._values or key in self._blocks

    def __iter__(self) -> Iterator[int]:
        yield from self._blocks
        yield from (k for k in self._values if k not in self._blocks)

    def __len__(self) -> int:
        return len(self._blocks) + sum(1 for k in self._values if k not in self._blocks)


def _lazy_init(self: Any, blocks: "gr.Blocks") -> None:
    """Gradio's `SessionState.__init__` with `config_values` a `LazyConfigs` of the blocks
    Gradio's constructor renders."""
    self.blocks_config = copy(blocks.default_config)
    self.config_values = LazyConfigs(
        self.blocks_config, {k: v for k, v in self.blocks_config.blocks.items() if k in blocks.blocks}
    )
    self.state_data = {}
    self._state_ttl = {}
    self.is_closed = False
    # As Gradio's: a closed session's state is kept an hour (a second in Gradio's own e2e tests).
    self.STATE_TTL_WHEN_CLOSED = 1 if os.getenv("GRADIO_IS_E2E_TEST", None) else 3600


def _session_class() -> type:
    from gradio.state_holder import SessionState

    return SessionState


def matches_gradio(app: "gr.Blocks") -> bool:
    """Whether a lazy session of `app` holds what Gradio's own constructor gives: the same
    attributes and, once read, the same component configs."""
    cls = _session_class()
    own = cls.__dict__.get("_lma_gradio_init", cls.__init__)
    eager = object.__new__(cls)
    own(eager, app)
    lazy = object.__new__(cls)
    _lazy_init(lazy, app)
    if sorted(eager.__dict__) != sorted(lazy.__dict__):
        return False
    plain = ("blocks_config", "config_values")
    if any(eager.__dict__[k] != lazy.__dict__[k] for k in eager.__dict__ if k not in plain):
        return False
    if eager.blocks_config.blocks != lazy.blocks_config.blocks:
        return False
    return list(lazy.config_values) == list(eager.config_values) and dict(lazy.config_values) == eager.config_values


def install_lazy_session_config(app: "gr.Blocks") -> bool:
    """Make Gradio's sessions render each component config on first read, once
    `matches_gradio` confirms it for `app`; returns whether they do."""
    cls = _session_class()
    if "_lma_gradio_init" in cls.__dict__:
        return True
    if not matches_gradio(app):
        log.warning("Gradio's sessions differ from the release this Space pins; "
                    "each keeps its eager config copy")
        return False
    cls._lma_gradio_init = cls.__init__
    cls.__init__ = _lazy_init
    return True


def uninstall_lazy_session_config() -> None:
    """Gradio's own session constructor again (tests compare the two)."""
    cls = _session_class()
    if "_lma_gradio_init" in cls.__dict__:
        cls.__init__ = cls.__dict__["_lma_gradio_init"]
        del cls._lma_gradio_init


def _live_first_cache_class() -> type:
    """`LiveSessionsFirst`, made on first use since it subclasses a Gradio class."""
    from gradio.utils import LRUCache

    class LiveSessionsFirst(LRUCache):
        """Gradio's bounded cache of each session's message queue, which drops its oldest
        session when full, even one whose event still runs: an API client that sends no
        session makes a new one per call, so 2,000 calls during a long batch file dropped the
        batch's queue, and its browser lost the result. This cache drops the oldest session
        with no event in progress (`live(session)` is False), and only when every session is
        live the oldest one, as Gradio's does."""

        def __init__(self, max_size: int, live: Callable[[str], bool]):
            super().__init__(max_size)
            self._live = live

        def __setitem__(self, key: str, value: Any) -> None:
            if key not in self and len(self) >= self.max_size:
                idle = next((k for k in self if not self._live(k)), None)
                if idle is not None:
                    del self[idle]
            super().__setitem__(key, value)

    return LiveSessionsFirst


def keep_live_sessions(app: "gr.Blocks") -> None:
    """Give `app`'s queue (after `app.queue()`) a message cache that never drops a session
    whose event is in progress while a finished one can go instead."""
    queue = app._queue
    old = queue.pending_messages_per_session
    live = lambda session: bool(queue.pending_event_ids_session.get(session))  # noqa: E731
    cache = _live_first_cache_class()(old.max_size, live)
    cache.update(old)
    queue.pending_messages_per_session = cache
