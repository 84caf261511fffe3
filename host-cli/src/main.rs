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
            let f = usage_failure(&e.render().to_string());
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

/// clap's usage error as one failure: its first paragraph (the error and what it names, such as
/// the missing argument on the next line) is the message, its usage line the hint.
fn usage_failure(text: &str) -> report::Failure {
    let first = text.split("\n\n").next().unwrap_or_default();
    let message = first.split_whitespace().collect::<Vec<_>>().join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message).to_string();
    let usage = text.lines().find_map(|l| l.trim().strip_prefix("Usage: "));
    let hint = match usage {
        Some(u) => format!("usage: {u} (`host-cli --help` shows more)"),
        None => "`host-cli --help` shows the usage".to_string(),
    };
    report::Failure::usage(if message.is_empty() {
        "bad arguments".into()
    } else {
        message
    })
    .hint(hint)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_usage_error_in_json_keeps_what_it_names() {
        let text = "error: the following required arguments were not provided:\n  <COMMAND>\n\nUsage: host-cli exec <COMMAND> [ARGS]...\n\nFor more information, try '--help'.\n";
        let f = super::usage_failure(text);
        assert_eq!(
            f.message,
            "the following required arguments were not provided: <COMMAND>"
        );
        assert!(
            f.hint
                .as_deref()
                .is_some_and(|h| h.contains("host-cli exec <COMMAND> [ARGS]...")),
            "{:?}",
            f.hint
        );
    }
}
