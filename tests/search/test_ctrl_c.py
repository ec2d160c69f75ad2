"""`search.tune_fixes.CtrlC`: a Ctrl-C is recorded wherever it lands, asks a running Ray Tune
fit for its graceful stop (SIGUSR1), and a second one stops at once; Tune's own SIGINT
handler stays off meanwhile, and everything is put back after."""

import os
import signal

import pytest

from search.tune_fixes import CtrlC


def test_ctrl_c_is_recorded_asks_tune_to_stop_and_a_second_one_stops_at_once(monkeypatch):
    monkeypatch.delenv("TUNE_DISABLE_SIGINT_HANDLER", raising=False)
    before = signal.getsignal(signal.SIGINT)
    tune_stops = []
    previous_usr1 = signal.signal(signal.SIGUSR1, lambda *_: tune_stops.append(1))  # a fit's
    try:
        ctrl_c = CtrlC().install()
        assert os.environ["TUNE_DISABLE_SIGINT_HANDLER"] == "1"  # Tune's handler stays off
        assert not ctrl_c.received
        os.kill(os.getpid(), signal.SIGINT)
        assert ctrl_c.received and tune_stops == [1]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
        ctrl_c.restore()
        assert signal.getsignal(signal.SIGINT) is before
        assert "TUNE_DISABLE_SIGINT_HANDLER" not in os.environ
    finally:
        signal.signal(signal.SIGUSR1, previous_usr1)
