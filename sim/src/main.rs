//! `sim`: the Tether device on a PC.

mod cli;
mod many;
mod run;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    let level = match args.verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    env_logger::Builder::new()
        .filter_level(level)
        .filter_module(
            "smoltcp",
            if args.verbose >= 3 {
                log::LevelFilter::Trace
            } else {
                log::LevelFilter::Warn
            },
        )
        .parse_env("TETHER_LOG")
        .init();
    match run::main(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sim: {e}");
            ExitCode::from(1)
        }
    }
}
