//! The commands: one module per subcommand (or family of them), the target they run on, and the
//! hints their failures get.

mod bench;
mod datagram;
mod devices;
pub(crate) mod discover;
mod exec;
mod files;
pub mod firmware;
mod hints;
mod info;
mod keygen;
mod ping;
mod target;
mod transfer;

use crate::cli::{Args, Command, TimeAction};
use crate::report::{Failure, Reporter};

pub(crate) use hints::finish;
pub use hints::{check_name, file_refused, with_a_hint};
pub use info::date;
pub use target::{connect, first_hello, learn, open, shell_quote, Need, Target, CLIENT};

pub type Result<T> = std::result::Result<T, Failure>;

pub fn run(args: &Args, out: &Reporter) -> Result<()> {
    match &args.command {
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                *shell,
                &mut crate::cli::Args::command(),
                "host-cli",
                &mut std::io::stdout(),
            );
            return Ok(());
        }
        Command::Devices => return devices::devices(args, out).map_err(with_a_hint),
        Command::Discover {
            scope,
            no_mdns,
            mdns,
            serial,
        } => {
            let how = discover::How {
                mdns: discover::Mdns::from_flags(*mdns, *no_mdns),
                usb_serial: *serial,
            };
            return discover::run(args, out, scope, how).map_err(with_a_hint);
        }
        Command::Keygen { file, force } => return keygen::keygen(out, file, *force).map_err(with_a_hint),
        Command::Fw { action } => {
            if let Some(done) = firmware::run_local(out, action) {
                return done.map_err(with_a_hint);
            }
        }
        _ => {}
    }
    // Several devices in --to (unless a -d flag beats a TETHER_TO list: flags beat the environment).
    if let Some(crate::fanout::To::Many(items)) = &args.to {
        if !(args.to_from_env && args.device_from_flag) {
            return crate::fanout::run(args, out, items).map_err(with_a_hint);
        }
    }
    let t = Target::resolve(args).map_err(with_a_hint)?;
    run_on(args, &t, out).map_err(|f| with_a_hint(finish(&t, f)))
}

/// Runs the command on the one device `t`.
pub(crate) fn run_on(args: &Args, t: &Target, out: &Reporter) -> Result<()> {
    match &args.command {
        Command::Send { message, upper } => ping::send(t, out, message, *upper)?,
        Command::Ping { count, interval, hello } => ping::ping(t, out, *count, *interval, *hello)?,
        Command::Info => info::info(t, out)?,
        Command::Exec { command, args: cargs } => exec::exec(t, out, command, cargs)?,
        Command::Put {
            local,
            remote,
            overwrite,
            resume: _,
        } => transfer::put(t, out, local, remote.as_deref(), *overwrite, args.retries)?,
        Command::Get {
            remote,
            local,
            overwrite,
            resume: _,
        } => transfer::get(t, out, remote, local.as_deref(), *overwrite, args.retries)?,
        Command::Ls => files::ls(t, out, args.retries)?,
        Command::Stat { name } => files::stat(t, out, name)?,
        Command::Rm { name } => files::rm(t, out, name)?,
        Command::Time {
            action: Some(TimeAction::Set),
            ..
        } => datagram::time_set(t, out)?,
        Command::Time { action: None, format } => datagram::time_get(t, out, format.as_deref().unwrap_or(""))?,
        Command::Chat { message, from } => datagram::chat(t, out, message.as_deref(), from)?,
        Command::Listen { count, duration } => datagram::listen(t, out, *count, *duration)?,
        Command::Bench { rounds, size, repeat } => bench::run(t, out, *rounds, *size, *repeat)?,
        Command::Fw { action } => firmware::run(t, out, action, args.retries)?,
        Command::Reset => firmware::reset(t, out)?,
        Command::Devices | Command::Completions { .. } | Command::Keygen { .. } | Command::Discover { .. } => {
            unreachable!("handled before resolving the device")
        }
    }
    Ok(())
}
