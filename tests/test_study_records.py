"""Every study table in `results/` is rebuilt from the records committed beside it (benchmark/measure/records.py)."""

from pathlib import Path

import pytest

from benchmark.measure.records import BOARDS_FILE, RECORDS_DIR, rebuilt_tables, with_table

RESULTS = Path(__file__).resolve().parents[1] / "results"
# A study sits in results/<name>/, or beside the study it extends (results/tasks/squad/).
STUDIES = sorted(
    p.parent.parent for pattern in ("*", "*/*") for p in RESULTS.glob(f"{pattern}/{RECORDS_DIR}/{BOARDS_FILE}")
)
# Studies measured before their records were kept: their run directories are gone, so their tables cannot be
# rebuilt until they run again (the README's Results section says which). The list only shrinks.
NOT_YET_RERUN = {"augmentation", "chains", "freezing", "merging", "peft", "quickstart-native-bf16", "search"}


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.name)
def test_a_studys_tables_are_rebuilt_from_its_committed_records(study):
    readme = (study / "README.md").read_text()
    tables = rebuilt_tables(study)
    assert tables
    for name, table in tables.items():
        assert table in readme, f"{study.name}: table {name} differs from its README"


def test_every_study_with_a_leaderboard_has_its_records_or_is_listed_as_not_rerun():
    with_tables = {
        (p.name if p.name != "README.md" else p.parent.name)
        for p in [*RESULTS.glob("*/README.md"), *RESULTS.glob("*/*/README.md"), *RESULTS.glob("*.md")]
        if "\n# Leaderboard: " in p.read_text()
    }
    assert with_tables - {p.name for p in STUDIES} == NOT_YET_RERUN
    assert not NOT_YET_RERUN & {p.name for p in STUDIES}


def test_write_replaces_only_the_table_with_the_same_heading():
    other = "# Leaderboard: b\n\n| b |\nTrials: 2.\n"
    readme = "intro\n# Leaderboard: a\n\n| old |\nTrials: 1 of 1.\nafter\n" + other
    table = "# Leaderboard: a\n\n| new |\nnote\nTrials: 3 of 3.\n"
    assert with_table(readme, table) == "intro\n" + table + "after\n" + other
