"""The SFTP cut-off between a remote hash and a read-back follows the link (sftp_costs.py)."""

from __future__ import annotations

from triplicate.destinations.sftp_costs import MEASURED_READ, UNMEASURED_CUTOFF, VerifyCosts


def test_unmeasured_links_use_the_lan_cutoff() -> None:
    costs = VerifyCosts()
    assert costs.cutoff() == UNMEASURED_CUTOFF
    costs.note_command(0.02)
    assert costs.cutoff() == UNMEASURED_CUTOFF  # no read-back measured yet


def test_a_slow_uplink_hashes_small_files_on_the_server() -> None:
    costs = VerifyCosts()
    costs.note_command(0.02)
    costs.note_read_back(2_500_000, 0.1)  # 25 MB/s: 200 Mbit/s
    assert costs.cutoff() == 500_000
    lan = VerifyCosts()
    lan.note_command(0.02)
    lan.note_read_back(30_000_000, 0.1)  # 300 MB/s
    assert lan.cutoff() == 6_000_000


def test_short_read_backs_do_not_set_the_rate_and_averages_move_gently() -> None:
    costs = VerifyCosts()
    costs.note_command(0.02)
    costs.note_read_back(MEASURED_READ - 1, 0.001)  # round trips, not a rate
    assert costs.read_rate is None
    costs.note_read_back(2_500_000, 0.1)
    costs.note_read_back(2_500_000, 1.0)  # one slow read-back under a burst of uploads
    assert 2_500_000 < costs.read_rate < 25_000_000
