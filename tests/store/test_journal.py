import subprocess
import sys
import textwrap
from pathlib import Path

from nitroproxy.store.journal import SPILL, WAL, Journal, decode, encode
from tests.records import make_record


def test_records_survive_the_round_trip_and_torn_lines_are_skipped(tmp_path: Path) -> None:
    records = [make_record(1), make_record(2, client_ip="10.0.0.0", ttft_ms=12.5, stream=True)]
    good = b"".join(encode(r) for r in records)
    bad_crc = b"00000000" + encode(make_record(3))[8:]
    torn = encode(make_record(4))[:-20]  # a crash in the middle of a write
    found = decode(good + bad_crc + torn)
    assert found.records == records
    assert found.torn == 2


def test_a_segment_another_writer_holds_is_left_alone(tmp_path: Path) -> None:
    writing = Journal(tmp_path)
    writing.append(SPILL, [make_record(1)])
    other = Journal(tmp_path)  # another process's view of the same directory
    (path,) = other.replayable()
    assert other.read(path) is None  # its writer still holds the flock
    writing.close()
    found = other.read(path)
    assert found is not None and [r.id for r in found.records] == ["rec-1"]


def test_own_open_and_own_wal_segments_are_not_replayed(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append(WAL, [make_record(1)])
    journal.append(SPILL, [make_record(2)])
    assert journal.replayable() == []
    journal.close()
    (spill,) = journal.replayable()  # sealed now; its own wal copy stays the writer's
    assert spill.name.startswith("spill-")
    journal.remove(spill)
    assert [p.name[:4] for p in tmp_path.iterdir()] == ["wal-"]


def test_a_full_segment_is_sealed_and_a_new_one_begun(tmp_path: Path) -> None:
    journal = Journal(tmp_path, segment_bytes=400)
    for n in range(6):
        journal.append(SPILL, [make_record(n)])
    assert len(journal.sealed) >= 2
    assert sum(s.records for s in journal.sealed) <= 6


def test_a_failed_append_leaves_nothing_half_written(tmp_path: Path) -> None:
    # A real short write: the file-size limit makes write() fail as a full disk does.
    script = textwrap.dedent(
        f"""
        import resource, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from nitroproxy.store.journal import SPILL, Journal
        from tests.records import make_record
        resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))
        journal = Journal({str(tmp_path)!r})
        n = 0
        try:
            while True:
                journal.append(SPILL, [make_record(n), make_record(n + 1)])
                n += 2
        except OSError:
            pass
        journal.append(SPILL, [make_record(1000)])  # a fresh segment takes the next one
        journal.close()
        print(n)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    written = int(result.stdout)
    assert written > 0
    found = [decode(p.read_bytes()) for p in sorted(tmp_path.iterdir())]
    assert sum(f.torn for f in found) == 0
    ids = sorted(r.id for f in found for r in f.records)
    assert ids == sorted([f"rec-{n}" for n in range(written)] + ["rec-1000"])
