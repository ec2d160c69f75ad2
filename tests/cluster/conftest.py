"""What the cluster tests share."""

import time

import pytest


@pytest.fixture
def wait_until():
    """`wait_until(condition, seconds)`: True as soon as `condition()` holds (polled every
    0.1 s), else whether it holds at the deadline."""
    def wait(condition, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.1)
        return condition()
    return wait
