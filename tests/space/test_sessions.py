"""Gradio sessions render their component configs on first read (space/sessions.py), with the
same values as Gradio's own constructor."""

from __future__ import annotations

import pytest

from space.sessions import (
    LazyConfigs,
    install_lazy_session_config,
    matches_gradio,
    uninstall_lazy_session_config,
)


@pytest.fixture(scope="module")
def app(space_resources):
    from space.app import build_app

    return build_app(space_resources)


@pytest.fixture
def gradio_sessions(app):
    """Gradio's own constructor for the test; the lazy one again after it."""
    uninstall_lazy_session_config()
    yield
    uninstall_lazy_session_config()
    install_lazy_session_config(app)


def test_the_built_app_installs_lazy_sessions_that_match_gradio(app):
    from gradio.state_holder import SessionState

    assert install_lazy_session_config(app)
    assert matches_gradio(app)
    session = SessionState(app)
    assert isinstance(session.config_values, LazyConfigs)
    assert session.config_values._values == {}  # nothing rendered until read


def test_a_lazy_session_reads_and_updates_as_gradio_s_does(app, gradio_sessions):
    from gradio.state_holder import SessionState

    eager = SessionState(app)
    install_lazy_session_config(app)
    lazy = SessionState(app)
    assert isinstance(lazy.config_values, LazyConfigs) and isinstance(eager.config_values, dict)
    textbox = next(k for k, b in app.blocks.items() if type(b).__name__ == "Textbox")
    for session in (eager, lazy):
        session._update_value_in_config(textbox, "delete every file")
        session[textbox] = app.blocks[textbox]
        session._update_value_in_config(textbox, "list my files")
    assert lazy.config_values[textbox] == eager.config_values[textbox]
    assert lazy.config_values[textbox]["props"]["value"] == "list my files"
    assert len(lazy.config_values._values) == 1  # only the block that was read or written
    assert list(lazy.components) == list(eager.components)
    assert len(lazy.config_values) == len(eager.config_values)
    assert 10**9 not in lazy.config_values
    with pytest.raises(KeyError):
        lazy.config_values[10**9]


def test_install_is_refused_when_gradio_s_sessions_hold_other_attributes(
    app, gradio_sessions, monkeypatch
):
    from gradio.state_holder import SessionState

    own = SessionState.__init__

    def changed(self, blocks):
        own(self, blocks)
        self.new_field = 1

    monkeypatch.setattr(SessionState, "__init__", changed)
    assert not matches_gradio(app)
    assert not install_lazy_session_config(app)
    assert SessionState.__init__ is changed



def test_a_full_message_cache_drops_a_finished_session_before_a_running_one(app):
    from space.sessions import keep_live_sessions

    keep_live_sessions(app)
    queue = app._queue
    cache = queue.pending_messages_per_session
    assert type(cache).__name__ == "LiveSessionsFirst" and cache.max_size == 2000
    saved = dict(queue.pending_event_ids_session)
    cache.clear()
    cache.max_size = 3
    try:
        queue.pending_event_ids_session.clear()
        queue.pending_event_ids_session.update({"batch": {"event-1"}, "done": set()})
        for session in ("batch", "done", "call-1", "call-2"):
            cache[session] = object()
        assert list(cache) == ["batch", "call-1", "call-2"]  # "done" went, not the older "batch"
        queue.pending_event_ids_session.update({"call-1": {"e"}, "call-2": {"e"}})
        cache["call-3"] = object()  # every session live: the oldest goes, as in Gradio
        assert list(cache) == ["call-1", "call-2", "call-3"]
    finally:
        cache.clear()
        cache.max_size = 2000
        queue.pending_event_ids_session.clear()
        queue.pending_event_ids_session.update(saved)
