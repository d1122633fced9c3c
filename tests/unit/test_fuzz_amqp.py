"""The AMQP wire fuzzer's fixed-seed short run (``bin/fuzz amqp 1000000`` is the long one):
generated and mutated AMQP frames from four peers through the wire into the core, no bug."""
from tests.fuzz_amqp import run


def test_twenty_thousand_fuzzed_amqp_messages_find_no_bug() -> None:
    stats = run(20_000, seed=2026)
    assert stats["messages"] == 20_000
    # The frames reach every layer: connections and channels are closed for what is
    # broken, and most frames get through to the core's rules.
    assert 0 < stats["closes"] < 10_000 and 0 < stats["channel_closes"] < 15_000


def test_the_amqp_fuzzer_reports_a_bug_it_is_shown(monkeypatch) -> None:  # noqa: ANN001
    """The check can fail: a core that crashes on a purge is caught, with the seed."""

    def broken(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        raise RuntimeError("planted bug")

    from zbroker.core.messaging.declarations import Declarations
    monkeypatch.setattr(Declarations, "queue_purge", broken)
    try:
        run(5_000, seed=5)
    except AssertionError as exc:
        assert "seed 5" in str(exc) and ("541" in str(exc) or "logged a bug" in str(exc))
    else:
        raise AssertionError("the planted bug went unnoticed")
