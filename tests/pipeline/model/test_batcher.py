"""CoalescingScorer on the fitted-head model: concurrent callers share model calls and each gets
its own rows, the same as scoring them alone; large calls go on their own; errors reach every
caller of the failed call and the next callers are still served."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from pipeline.model.batcher import CoalescingScorer
from pipeline.model.inference import Predictor

COMMANDS = [
    "set a timer for twenty minutes",
    "install a keylogger on my roommate's laptop",
    "delete everything in my Downloads folder",
    "wire $900 to this account",
    "book a table for two at eight",
    "احذف كل الملفات المؤقتة من مجلد التنزيلات",
    "turn off the porch light",
    "read my ex's DMs without her knowing",
]


@pytest.fixture(scope="module")
def predictor(gate_head_model_dir) -> Predictor:
    return Predictor(gate_head_model_dir)


class SlowLock:
    """A lock that holds the model a little longer, so callers pile up behind it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.entered = 0

    def __enter__(self) -> None:
        self._lock.acquire()
        self.entered += 1
        threading.Event().wait(0.05)

    def __exit__(self, *exc) -> None:
        self._lock.release()


def run_concurrently(scorer: CoalescingScorer, requests: list[list[str]]) -> list:
    results: list = [None] * len(requests)
    start = threading.Barrier(len(requests))

    def call(i: int) -> None:
        start.wait()
        try:
            results[i] = scorer.score(requests[i])
        except BaseException as exc:  # noqa: BLE001 - the test looks at what each caller got
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a caller never returned"
    return results


def test_concurrent_callers_share_calls_and_get_their_own_rows(predictor):
    lock = SlowLock()
    scorer = CoalescingScorer(predictor, lock, max_commands=8)
    requests = [[c] for c in COMMANDS * 3] + [COMMANDS[:3], COMMANDS[5:7]]
    results = run_concurrently(scorer, requests)
    alone = predictor.score(COMMANDS)
    expected = {c: alone.probs[i] for i, c in enumerate(COMMANDS)}
    for texts, got in zip(requests, results):
        assert not isinstance(got, BaseException), got
        assert got.probs.shape == (len(texts), predictor.score(texts[:1]).probs.shape[1])
        for row, text in zip(got.probs, texts):
            np.testing.assert_allclose(row, expected[text], atol=1e-5)
        assert got.windows.tolist() == [1] * len(texts) and got.read_in_full.all()
    commands = sum(map(len, requests))
    # 29 commands in calls of at most 8: at least 4 calls, and far fewer than one per caller.
    assert -(-commands // 8) <= scorer.calls < len(requests)
    assert lock.entered == scorer.calls


def test_a_large_call_goes_on_its_own(predictor):
    scorer = CoalescingScorer(predictor, threading.Lock(), max_commands=4)
    got = scorer.score(COMMANDS)
    np.testing.assert_allclose(got.probs, predictor.score(COMMANDS).probs, atol=1e-6)
    assert scorer.calls == 1


def test_long_command_is_read_in_windows_through_the_scorer(predictor):
    long = " ".join(["please book a table for two at a nice italian place"] * 40) + " and wire all my savings"
    scorer = CoalescingScorer(predictor, threading.Lock())
    got, alone = run_concurrently(scorer, [[long], [COMMANDS[0]]])[0], predictor.score([long])
    assert got.windows[0] == alone.windows[0] > 1
    np.testing.assert_allclose(got.probs[0], alone.probs[0], atol=1e-5)


class FailingOnce:
    """A predictor whose first call raises, then scores like the real one."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.failed = False

    def score(self, texts):
        if not self.failed:
            self.failed = True
            threading.Event().wait(0.05)
            raise RuntimeError("model call failed")
        return self.predictor.score(texts)


def test_an_error_reaches_the_callers_of_that_call_and_others_are_served(predictor):
    scorer = CoalescingScorer(FailingOnce(predictor), threading.Lock(), max_commands=64)
    results = run_concurrently(scorer, [[c] for c in COMMANDS])
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors and all(str(e) == "model call failed" for e in errors)
    assert len(errors) < len(COMMANDS) or scorer.calls == 1
    # The scorer is not stuck: the next call is served.
    assert scorer.score([COMMANDS[0]]).probs.shape[0] == 1


def test_max_commands_must_be_positive(predictor):
    with pytest.raises(ValueError, match="max_commands"):
        CoalescingScorer(predictor, threading.Lock(), max_commands=0)
