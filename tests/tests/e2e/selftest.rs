//! `sim selftest` on the in-process stack: every step passes and is reported.

use tether_sim::selftest::{run, SelftestOptions};

const SERVICES: [&str; 15] = [
    "hello",
    "echo",
    "upper",
    "exec",
    "subscribe",
    "event",
    "put",
    "get",
    "list",
    "stat",
    "time",
    "message",
    "plain tcp",
    "plain udp",
    "remove",
];

#[test]
fn every_step_passes_with_a_small_transfer() {
    let opts = SelftestOptions {
        transfer_size: 1 << 20,
        ..SelftestOptions::default()
    };
    let report = run(&opts);
    let text = report.to_string();
    println!("{text}");
    assert!(report.ok(), "{text}");
    for service in SERVICES {
        assert!(text.contains(service), "{service} missing from\n{text}");
    }
    for name in ["upload", "download"] {
        let row = report.row(name).unwrap_or_else(|| panic!("no {name} row\n{text}"));
        assert!(
            row.detail.contains("iB/s") && !row.detail.contains("MB/s") && row.detail.contains("1.0 MiB"),
            "{}",
            row.detail
        );
    }
    assert!(text.contains("steps passed"), "{text}");
}

#[test]
fn selftest_on_a_directory_store_cleans_up() {
    let root = std::env::temp_dir().join(format!("tether-selftest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let opts = SelftestOptions {
        transfer_size: 256 << 10,
        root: Some(root.clone()),
        ..SelftestOptions::default()
    };
    let report = run(&opts);
    let left: Vec<_> = std::fs::read_dir(&root)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    let _ = std::fs::remove_dir_all(&root);
    assert!(report.ok(), "{report}");
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_failing_step_is_a_failed_row_not_a_panic() {
    // A store that cannot be created: the report says so instead of panicking.
    let file = std::env::temp_dir().join(format!("tether-selftest-notadir-{}", std::process::id()));
    std::fs::write(&file, b"x").unwrap();
    let opts = SelftestOptions {
        transfer_size: 1024,
        root: Some(file.join("sub")),
        ..SelftestOptions::default()
    };
    let report = run(&opts);
    let _ = std::fs::remove_file(&file);
    assert!(!report.ok());
    let setup = report.row("setup").expect("a setup row");
    assert!(!setup.ok && setup.detail.contains("cannot use"), "{report}");
}
