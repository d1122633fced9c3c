"""The frame fuzzer's fixed-seed short run (``bin/fuzz frames 1000000`` is the long one):
generated and mutated frames through the codec and the wire into the core, no bug."""
from tests.fuzz import run_frames


def test_thirty_thousand_fuzzed_messages_find_no_bug() -> None:
    stats = run_frames(30_000, seed=2026)
    assert stats["messages"] == 30_000
    # The frames reach every layer: some fail in the codec, some close connections,
    # and most get through to the core's rules.
    assert 0 < stats["codec_errors"] < 15_000 and 0 < stats["closes"] < 20_000


def test_the_fuzzer_reports_a_bug_it_is_shown(monkeypatch) -> None:
    """The check can fail: a core that crashes on a publish is caught, with the seed."""

    def broken(self, *args, **kwargs):
        raise RuntimeError("planted bug")

    from zbroker.core.messaging.publishing import Publishing
    monkeypatch.setattr(Publishing, "basic_publish", broken)
    try:
        run_frames(2_000, seed=5)
    except AssertionError as exc:
        assert "seed 5" in str(exc) and ("541" in str(exc) or "logged a bug" in str(exc))
    else:
        raise AssertionError("the planted bug went unnoticed")
