"""Fair sharing (`space.fairness`): single commands before batch chunks, one batch per client,
a bounded batch queue whose overflow is refused with a message, and cancellation that stops a
batch's work; first the parts, then the served Space with its real model."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from space.fairness import (
    BatchLimits,
    BatchQueue,
    BatchRefused,
    ModelLock,
    client_key,
    trusted_proxies,
)

# --- the model lock ------------------------------------------------------------------------


def _wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_waiting_single_command_goes_before_a_waiting_batch_chunk():
    lock, order = ModelLock(), []
    lock.batch.__enter__()  # a chunk in progress

    def take(side: str) -> None:
        with getattr(lock, side):
            order.append(side)

    batch = threading.Thread(target=take, args=("batch",))
    batch.start()
    time.sleep(0.05)  # the next chunk waits first...
    single = threading.Thread(target=take, args=("single",))
    single.start()
    _wait_until(lambda: lock._singles_waiting == 1)  # ...then a single command
    lock.batch.__exit__(None, None, None)
    batch.join(5)
    single.join(5)
    assert order == ["single", "batch"]


def test_a_plain_with_on_the_lock_has_single_command_priority():
    lock, order = ModelLock(), []

    def take(side, name: str) -> None:
        with side:
            order.append(name)

    with lock.single:
        waiter = threading.Thread(target=take, args=(lock.batch, "batch"))
        waiter.start()
        time.sleep(0.05)
        plain = threading.Thread(target=take, args=(lock, "plain"))
        plain.start()
        _wait_until(lambda: lock._singles_waiting == 1)
    waiter.join(5)
    plain.join(5)
    assert order == ["plain", "batch"]


# --- the batch queue -----------------------------------------------------------------------


async def _hold(queue: BatchQueue, client: str, started: asyncio.Event, release: asyncio.Event):
    async with queue.turn(client):
        started.set()
        await release.wait()


def test_a_client_has_at_most_one_batch_and_others_wait_in_order():
    async def scenario():
        queue = BatchQueue(BatchLimits(running=1, waiting=4))
        release = asyncio.Event()
        a, b = asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(_hold(queue, "client-a", a, release))
        await a.wait()
        with pytest.raises(BatchRefused, match="already have a batch file in progress"):
            async with queue.turn("client-a"):
                pass
        second = asyncio.create_task(_hold(queue, "client-b", b, release))
        await asyncio.sleep(0.05)
        assert (queue.running, queue.waiting, b.is_set()) == (1, 1, False)
        release.set()
        await asyncio.wait_for(asyncio.gather(first, second), 5)
        assert b.is_set() and (queue.running, queue.waiting) == (0, 0)

    asyncio.run(scenario())


def test_overflow_is_refused_with_a_message_that_says_what_to_do():
    async def scenario():
        queue = BatchQueue(BatchLimits(running=1, waiting=2))
        release = asyncio.Event()
        tasks = []
        for i in range(3):  # one running, two waiting
            tasks.append(asyncio.create_task(_hold(queue, f"c{i}", asyncio.Event(), release)))
        await asyncio.sleep(0.05)
        assert (queue.running, queue.waiting) == (1, 2)
        with pytest.raises(BatchRefused) as info:
            async with queue.turn("c3"):
                pass
        assert "batch queue is full (2 files waiting)" in str(info.value)
        assert "Single commands are still served" in str(info.value)
        release.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)

    asyncio.run(scenario())


def test_cancelling_a_waiting_or_running_batch_frees_its_place():
    async def scenario():
        queue = BatchQueue(BatchLimits(running=1, waiting=2))
        never = asyncio.Event()
        running = asyncio.create_task(_hold(queue, "a", asyncio.Event(), never))
        waiting = asyncio.create_task(_hold(queue, "b", asyncio.Event(), never))
        await asyncio.sleep(0.05)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        assert (queue.running, queue.waiting) == (1, 0)
        queue.admit("b")  # b may queue again
        started = asyncio.Event()
        later = asyncio.create_task(_hold(queue, "c", started, asyncio.Event()))
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await asyncio.wait_for(started.wait(), 5)  # the next one starts at once
        assert queue.running == 1
        later.cancel()
        await asyncio.gather(later, return_exceptions=True)
        assert (queue.running, queue.waiting) == (0, 0)

    asyncio.run(scenario())


def test_cancelling_a_batch_stops_its_model_work(space_resources):
    """A real classifier: after the cancel, at most the chunk in progress is finished."""
    classifier = space_resources.classifier
    rows = 40 * classifier.chunk_rows
    texts = [f"rename photo {i} in my Downloads folder by its date" for i in range(rows)]
    done: list[int] = []

    async def scenario():
        task = asyncio.create_task(
            classifier.classify_many_async(texts, on_progress=lambda d, t: done.append(d))
        )
        while len(done) < 2:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        at_cancel = done[-1]
        await asyncio.sleep(1.0)
        return at_cancel

    at_cancel = asyncio.run(scenario())
    assert done[-1] == at_cancel  # nothing classified after the cancel returned
    assert at_cancel <= 3 * classifier.chunk_rows < len(texts)


# --- who the client is ------------------------------------------------------------------------


def test_client_key_ignores_forwarded_for_entries_the_client_wrote():
    assert client_key("10.0.0.9", "1.2.3.4", proxies=0) == "10.0.0.9"
    assert client_key("10.0.0.9", "spoofed, 1.2.3.4", proxies=1) == "1.2.3.4"
    assert client_key("10.0.0.9", "spoofed, 1.2.3.4, 10.1.1.1", proxies=2) == "1.2.3.4"
    assert client_key("10.0.0.9", None, proxies=1) == "10.0.0.9"


def test_trusted_proxies_come_from_the_environment():
    assert trusted_proxies({}) == 0
    assert trusted_proxies({"SPACE_ID": "org/space"}) == 1
    assert trusted_proxies({"LM_ACTION_TRUSTED_PROXIES": "2", "SPACE_ID": "x"}) == 2
    with pytest.raises(ValueError, match="must be a whole number"):
        trusted_proxies({"LM_ACTION_TRUSTED_PROXIES": "one"})


# --- the served Space ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fair_space(four_way_resources):
    """The Space with a batch queue of one running and one waiting file, behind one trusted
    proxy (clients are told apart by X-Forwarded-For); its URL and queue."""
    from space.app import build_app, launch
    from tests.space.conftest import free_port

    queue = BatchQueue(BatchLimits(running=1, waiting=1))
    app = build_app(four_way_resources, batches=queue, proxies=1)
    _, url, _ = launch(app, host="127.0.0.1", port=free_port(), prevent_thread_lock=True, quiet=True)
    yield url.rstrip("/"), queue
    app.close()


def _client(url: str, address: str):
    from gradio_client import Client

    return Client(url, verbose=False, headers={"X-Forwarded-For": address})


@pytest.fixture(scope="module")
def big_file(tmp_path_factory, space_commands):
    path = tmp_path_factory.mktemp("fair") / "big.csv"
    texts = (space_commands["text"].tolist() * 400)[:5_000]
    path.write_text("text\n" + "\n".join(f'"{t}"' for t in texts) + "\n", encoding="utf-8")
    return path


def test_served_space_refuses_a_second_batch_and_overflow_while_serving_single_commands(
    fair_space, big_file
):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    url, queue = fair_space
    alice, bob, carol = (_client(url, a) for a in ("10.0.0.1", "10.0.0.2", "10.0.0.3"))
    running = alice.submit(handle_file(str(big_file)), api_name="/classify_batch")
    _wait_until(lambda: queue.running == 1, timeout=60)
    with pytest.raises(AppError, match="already have a batch file in progress"):
        alice.predict(handle_file(str(big_file)), api_name="/classify_batch")
    waiting = bob.submit(handle_file(str(big_file)), api_name="/classify_batch")
    _wait_until(lambda: queue.waiting == 1, timeout=60)
    with pytest.raises(AppError, match="batch queue is full"):
        carol.predict(handle_file(str(big_file)), api_name="/classify_batch")
    started = time.monotonic()
    assert carol.predict("set a timer for twenty minutes", api_name="/classify")["decision"]
    assert time.monotonic() - started < 10  # served beside the batches, not after them
    waiting.cancel()
    running.cancel()
    _wait_until(lambda: (queue.running, queue.waiting) == (0, 0), timeout=30)


def test_after_enough_single_calls_in_a_row_a_waiting_batch_chunk_goes_next():
    lock, order = ModelLock(batch_turn_every=3), []
    stop = threading.Event()

    def singles(name: str) -> None:
        while not stop.is_set():
            with lock.single:
                order.append("single")
                time.sleep(0.002)

    def chunk() -> None:
        with lock.batch:
            order.append("batch")

    workers = [threading.Thread(target=singles, args=(str(i),)) for i in range(3)]
    for w in workers:
        w.start()
    _wait_until(lambda: len(order) >= 5)
    batch = threading.Thread(target=chunk)
    batch.start()
    batch.join(5)
    stop.set()
    for w in workers:
        w.join(5)
    assert not batch.is_alive(), "the chunk starved behind steady single commands"
    i = order.index("batch")
    # At most batch_turn_every single calls (plus the one running when the chunk arrived) went
    # before it once it waited.
    assert order[:i].count("single") >= 5 and "single" in order[i + 1 :]
