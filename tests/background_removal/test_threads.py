"""Threads that adapt to load: the whole machine for a lone inference, a share under concurrency."""

from __future__ import annotations

import threading

import numpy as np
from PIL import Image

from services.background_removal.catalog import load_catalog
from services.background_removal.inference import AdaptiveRunner, RembgRunner
from services.background_removal.loaded import LoadedModels
from services.background_removal.settings import DEFAULT_CATALOG, BackgroundRemovalSettings
from services.background_removal.threads import ThreadBudget, available_cpus, thread_levels
from tests.background_removal.conftest import ASTRONAUT
from tests.mesh import MODELS_DIR


def test_levels_are_the_shares_of_the_cores_widest_first():
    assert thread_levels(2, 2) == [2, 1]
    assert thread_levels(16, 2) == [16, 8]
    assert thread_levels(16, 4) == [16, 8, 5, 4]
    assert thread_levels(1, 4) == [1]
    assert thread_levels(2, 8) == [2, 1]


def test_a_lone_inference_gets_every_core_and_concurrent_ones_share_them():
    budget = ThreadBudget(cores=16, max_concurrency=4)
    with budget.slot() as first:
        assert first == 16
        with budget.slot() as second:
            assert second == 8
            with budget.slot() as third, budget.slot() as fourth:
                assert (third, fourth) == (5, 4)
                with budget.slot() as fifth:  # past max_concurrency: the narrowest level
                    assert fifth == 4
    assert budget.running == 0
    with budget.slot() as alone_again:
        assert alone_again == 16


def test_a_slot_is_given_back_when_the_inference_fails():
    budget = ThreadBudget(cores=2, max_concurrency=2)
    try:
        with budget.slot():
            raise RuntimeError("inference failed")
    except RuntimeError:
        pass
    assert budget.running == 0


def test_the_service_adapts_by_default():
    assert BackgroundRemovalSettings().intra_op_threads == 0
    assert available_cpus() >= 1


def test_adaptive_runner_has_a_session_per_level_and_they_agree():
    registry = LoadedModels(load_catalog(DEFAULT_CATALOG), MODELS_DIR, "cpu", 0, 1, max_concurrency=2, cores=2)
    _, runner = registry.runner("u2netp")
    assert isinstance(runner, AdaptiveRunner)
    assert sorted(runner.by_threads) == [1, 2]
    for threads, session_runner in runner.by_threads.items():
        assert isinstance(session_runner, RembgRunner)
        assert session_runner.session.inner_session.get_session_options().intra_op_num_threads == threads

    photo = Image.open(ASTRONAUT).convert("RGB").resize((256, 256))
    lone = runner.predict(photo)
    assert runner.last_threads == 2
    with registry.budget.slot():  # another inference is running: this one takes the 1-thread session
        shared = runner.predict(photo)
        assert runner.last_threads == 1
    assert np.abs(np.asarray(lone, dtype=int) - np.asarray(shared, dtype=int)).max() <= 1


def test_concurrent_predictions_share_the_budget():
    registry = LoadedModels(load_catalog(DEFAULT_CATALOG), MODELS_DIR, "cpu", 0, 1, max_concurrency=2, cores=2)
    _, runner = registry.runner("u2netp")
    photo = Image.open(ASTRONAUT).convert("RGB").resize((128, 128))
    seen: list[int] = []
    inside = threading.Barrier(2)
    original = runner.by_threads[1].predict

    def held_predict(rgb):  # the second inference arrives while the first holds its slot
        seen.append(1)
        return original(rgb)

    runner.by_threads[1].predict = held_predict
    with registry.budget.slot():
        inside_thread = threading.Thread(target=lambda: (inside.wait(), runner.predict(photo)))
        inside_thread.start()
        inside.wait()
        inside_thread.join()
    assert seen == [1]


def test_fixed_threads_keep_one_session():
    registry = LoadedModels(load_catalog(DEFAULT_CATALOG), MODELS_DIR, "cpu", 1, 1, max_concurrency=2, cores=2)
    _, runner = registry.runner("u2netp")
    assert isinstance(runner, RembgRunner)
    assert runner.session.inner_session.get_session_options().intra_op_num_threads == 1
