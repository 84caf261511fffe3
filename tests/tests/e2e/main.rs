//! The end-to-end tests, in one test binary (one link instead of one per file): the real
//! server against a real smoltcp peer in one process, and the real `sim` and `host-cli` binaries
//! against each other and against real peers. Each module is one theme; run one with
//! `cargo test -p tether-tests --test e2e MODULE::` (for example `e2e_secure::`).

#[macro_use]
mod common;
mod cost_report;
mod dirstore;
mod discovery;
mod e2e_bridge;
mod e2e_cli_trust;
mod e2e_clock;
mod e2e_dhcp;
mod e2e_files;
mod e2e_firmware;
mod e2e_first_hour;
mod e2e_fleet;
mod e2e_host_cli;
mod e2e_lost_commit;
mod e2e_mdns;
mod e2e_secure;
mod e2e_serial;
mod e2e_sim;
mod e2e_stream_faults;
mod e2e_wireshark;
mod plain;
mod readme;
mod selftest;
mod server;
mod server_concurrency;
mod server_faults;
mod server_files;
mod server_limits;
mod server_memory;
mod server_pinned_get;
mod server_sessions;
mod server_takeover;
mod server_udp;
mod tutorial;
