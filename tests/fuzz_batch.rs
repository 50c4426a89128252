//! Property-based fuzzing of the batch file parser: random bytes, and the example files cut or
//! mutated at random, must never panic; whatever it accepts is a list of tasks with valid, unique
//! job ids; and any cut of the JSON example short of its end is refused, never half-loaded.

use gridwatch::jobs::batch::{parse, valid_job_id};
use proptest::prelude::*;

const TRABAJOS: &str = include_str!("fixtures/trabajos.txt");
const TAREAS: &str = include_str!("fixtures/tareas_manuales_ejemplo.json");

fn check_accepted(bytes: &[u8]) {
    if let Ok(batch) = parse(bytes) {
        assert!(!batch.tasks.is_empty());
        let mut ids: Vec<&str> = batch.tasks.iter().map(|t| t.task_id.as_str()).collect();
        assert!(ids.iter().all(|id| valid_job_id(id)), "{ids:?}");
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), batch.tasks.len(), "duplicate ids accepted");
    }
}

fn mutated(base: &'static str) -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec((0..base.len(), any::<u8>()), 0..6),
        0..=base.len(),
    )
        .prop_map(move |(edits, keep)| {
            let mut bytes = base.as_bytes()[..keep].to_vec();
            for (at, byte) in edits {
                if at < bytes.len() {
                    bytes[at] = byte;
                }
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_accepted(&bytes);
    }

    #[test]
    fn mutated_csv_never_panics(bytes in mutated(TRABAJOS)) {
        check_accepted(&bytes);
    }

    #[test]
    fn mutated_json_never_panics(bytes in mutated(TAREAS)) {
        check_accepted(&bytes);
    }

    #[test]
    fn a_cut_json_file_is_refused(keep in 1..TAREAS.trim_end().len()) {
        prop_assert!(parse(&TAREAS.as_bytes()[..keep]).is_err());
    }
}
