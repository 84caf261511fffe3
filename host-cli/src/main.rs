//! `host-cli`: talk to a Tether device from a PC.

mod cli;
mod cmd;
mod report;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    let out = report::Reporter::new(args.json, args.quiet, args.verbose);
    match cmd::run(&args, &out) {
        Ok(code) => code,
        Err(e) => out.fail(&e),
    }
}
