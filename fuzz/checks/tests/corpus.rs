//! Replays every checked-in corpus input and every crash the fuzzers ever found through the
//! same checks the fuzz targets run, so `cargo test` keeps them fixed.

use std::path::PathBuf;

#[test]
fn corpus_and_regressions_replay_clean() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut replayed = 0;
    for (name, check) in fuzz_checks::TARGETS {
        let mut seeds = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                eprintln!("{}", path.display());
                check(&data);
                seeds += 1;
            }
        }
        assert!(seeds > 0, "no corpus for fuzz target {name}");
        replayed += seeds;
    }
    eprintln!("replayed {replayed} inputs");
}
