//! The checked-in seed corpus (`corpus/<target>/`) is what `tether_fuzz::seeds` generates, and
//! every file of it runs through its harness cleanly (a quick replay without libFuzzer).
//!
//! After changing the seeds or the input layouts: `TETHER_FUZZ_WRITE_SEEDS=1 cargo test` here.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

type Seeds = Vec<(String, Vec<u8>)>;

fn dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target)
}

fn on_disk(target: &str) -> BTreeMap<String, Vec<u8>> {
    let Ok(entries) = fs::read_dir(dir(target)) else {
        return BTreeMap::new();
    };
    entries
        .map(|e| {
            let e = e.expect("corpus entry");
            (
                e.file_name().into_string().expect("UTF-8 name"),
                fs::read(e.path()).expect("read seed"),
            )
        })
        .collect()
}

fn check(target: &str, seeds: Seeds) {
    let want: BTreeMap<String, Vec<u8>> = seeds.into_iter().collect();
    if std::env::var_os("TETHER_FUZZ_WRITE_SEEDS").is_some() {
        let d = dir(target);
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("create corpus dir");
        for (name, bytes) in &want {
            fs::write(d.join(name), bytes).expect("write seed");
        }
    }
    let have = on_disk(target);
    let names = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&have),
        names(&want),
        "corpus/{target}: rewrite with TETHER_FUZZ_WRITE_SEEDS=1"
    );
    for (name, bytes) in &want {
        assert!(
            have[name] == *bytes,
            "corpus/{target}/{name} is stale: rewrite with TETHER_FUZZ_WRITE_SEEDS=1"
        );
    }
}

#[test]
fn decoder_corpus_is_the_generated_one() {
    check("decoder", tether_fuzz::seeds::decoder_seeds());
}

#[test]
fn server_corpus_is_the_generated_one() {
    check("server", tether_fuzz::seeds::server_seeds());
}

#[test]
fn decoder_seeds_run_cleanly() {
    for (_, bytes) in tether_fuzz::seeds::decoder_seeds() {
        tether_fuzz::decoder::run(&bytes);
    }
}

#[test]
fn server_seeds_run_cleanly() {
    for (name, bytes) in tether_fuzz::seeds::server_seeds() {
        let report = tether_fuzz::server::run_report(&bytes);
        eprintln!("server seed {name}: {report:?}");
        // Every seed gets answers; the UDP one events too.
        assert!(report.frames + report.datagrams >= 2, "{name}: {report:?}");
        if name == "udp" {
            assert!(report.events >= 2 && report.datagrams >= 6, "{name}: {report:?}");
        }
    }
}

/// Replays files given in `TETHER_FUZZ_REPLAY` (`decoder:PATH` or `server:PATH`, comma
/// separated), e.g. a crash artifact, under the test harness's panic reporting.
#[test]
fn replay_given_files() {
    let Some(list) = std::env::var_os("TETHER_FUZZ_REPLAY") else {
        return;
    };
    for item in list.to_str().expect("UTF-8").split(',') {
        let (target, path) = item.split_once(':').expect("TARGET:PATH");
        let bytes = fs::read(path).expect("read replay file");
        match target {
            "decoder" => tether_fuzz::decoder::run(&bytes),
            "server" => tether_fuzz::server::run(&bytes),
            other => panic!("unknown target {other}"),
        }
    }
}
