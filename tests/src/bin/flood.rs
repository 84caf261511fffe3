//! `flood`: a bounded flood of connections without the device's key, against a device on
//! 127.0.0.1, for the attacker-side checks of the emulated board (`scripts/firmware.sh`) and for
//! trying a device by hand. Prints what it did as one JSON object.
//!
//! ```text
//! flood --to 127.0.0.1:PORT --rate 200 --seconds 20 [--hold-ms 2000] [--key-file KEY]
//! ```
//!
//! With `--key-file`, the flood includes a key holder's message 1 replayed (as one recorded on the
//! wire would be); the key is used for nothing else.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tether_tests::flood::{recorded_message1, Flood};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flood: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut to: Option<SocketAddr> = None;
    let (mut rate, mut seconds, mut hold_ms) = (200u32, 20u64, 2_000u64);
    let mut key = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--to" => to = Some(value()?.parse().map_err(|e| format!("--to: {e}"))?),
            "--rate" => rate = value()?.parse().map_err(|e| format!("--rate: {e}"))?,
            "--seconds" => seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--hold-ms" => hold_ms = value()?.parse().map_err(|e| format!("--hold-ms: {e}"))?,
            "--key-file" => key = Some(value()?),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    let to = to.ok_or("--to ADDRESS:PORT is required")?;
    if !to.ip().is_loopback() {
        return Err(format!("{to} is not a loopback address: floods stay on 127.0.0.0/8"));
    }
    if rate == 0 || rate > 1_000 || seconds > 120 || hold_ms > 30_000 {
        return Err("bounded floods only: --rate 1..=1000, --seconds ≤ 120, --hold-ms ≤ 30000".into());
    }
    let recorded = match key {
        Some(path) => vec![recorded_message1(
            &tether_host::secure::read_key_file(path.as_ref())
                .map_err(|e| e.to_string())?
                .0,
        )],
        None => Vec::new(),
    };
    let report = Flood {
        to,
        rate,
        duration: Duration::from_secs(seconds),
        hold: Duration::from_millis(hold_ms),
        recorded,
        ..Flood::at(to.port())
    }
    .start()
    .wait();
    println!(
        "{{\"connected\": {}, \"failed\": {}, \"ended_by_device\": {}}}",
        report.connected, report.failed, report.ended_by_device
    );
    Ok(())
}
