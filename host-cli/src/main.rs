//! `host-cli`: talk to a Tether device from a PC.

// The clap doc comments are --help text, where `HOST[:PORT]` is the usual notation, not a link.
#![allow(rustdoc::broken_intra_doc_links)]

mod cli;
mod cmd;
mod fanout;
mod interrupt;
mod report;

use std::process::ExitCode;

use clap::error::ErrorKind;
// The config file is the library's (tether-bridge reads it too); `crate::config` names it here.
use tether_host::config;

fn main() -> ExitCode {
    let args = match cli::Args::parse_from_env() {
        Ok(a) => a,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) if std::env::args().any(|a| a == "--json") => {
            // Scripts get usage errors as JSON too; clap's text is the message.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            let message = first.strip_prefix("error: ").unwrap_or(first).to_string();
            let f = report::Failure::usage(message).hint("`host-cli --help` shows the usage");
            return report::Reporter::new(true, false, false).fail(&f);
        }
        Err(e) => {
            // clap's own message and exit code 2 (0 for help that was asked for).
            e.exit()
        }
    };
    let out = report::Reporter::new(args.json, args.quiet, args.verbose);
    interrupt::install(args.json);
    match cmd::run(&args, &out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => out.fail(&f),
    }
}
