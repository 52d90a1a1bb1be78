//! The provider's status journal as a crash or a stranger's disk may leave it:
//! any bytes in `github-statuses.jsonl`. Opening it must never panic nor
//! fail on what a line holds (an unreadable line is skipped), and what it
//! replays survives its own compaction: opening the compacted file again
//! gives the same deployments in the same state.
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};

use libfuzzer_sys::fuzz_target;
use slipway_provider::statuses::journal::{Journal, FILE_NAME};

static RUN: AtomicU64 = AtomicU64::new(0);

fuzz_target!(|input: &[u8]| {
    let dir = std::env::temp_dir().join(format!(
        "slipway-fuzz-journal-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    std::fs::write(dir.join(FILE_NAME), input).expect("the journal is written");
    let journal = Journal::open(&dir).expect("any content opens: bad lines are skipped");
    let replayed: Vec<_> = journal
        .pending()
        .into_iter()
        .map(|id| journal.get(id))
        .collect();
    drop(journal);
    let again = Journal::open(&dir).expect("a compacted journal opens");
    let reopened: Vec<_> = again
        .pending()
        .into_iter()
        .map(|id| again.get(id))
        .collect();
    assert_eq!(replayed, reopened, "compaction kept what was replayed");
    drop(again);
    let _ = std::fs::remove_dir_all(&dir);
});
