"""Each pytest-xdist worker gets its own Redis database (tests/settings.py): two workers on
one database would hear each other's channel groups and Celery queues."""

import pytest

from tests.settings import _worker_redis_url


@pytest.mark.parametrize(
    ("redis_url", "worker", "expected"),
    [
        ("redis://127.0.0.1:6379/1", "gw0", "redis://127.0.0.1:6379/1"),
        ("redis://127.0.0.1:6379/1", "gw1", "redis://127.0.0.1:6379/2"),
        ("redis://127.0.0.1:6379", "gw1", "redis://127.0.0.1:6379/1"),
        ("redis://:secret@redis.example:6380/3", "gw2", "redis://:secret@redis.example:6380/5"),
    ],
)
def test_a_worker_adds_its_number_to_the_runs_database(redis_url, worker, expected):
    assert _worker_redis_url(redis_url, worker) == expected


def test_a_worker_past_the_sixteenth_database_is_refused_not_wrapped():
    with pytest.raises(RuntimeError, match="no Redis database for pytest-xdist worker gw2"):
        _worker_redis_url("redis://127.0.0.1:6379/14", "gw2")
