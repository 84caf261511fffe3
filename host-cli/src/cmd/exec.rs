//! `exec COMMAND [ARGS]`: a command of the device's registry, its output streamed.

use std::io::Write as _;

use serde_json::json;
use tether_core::wire::ErrorCode;

use super::{open, Result, Target};
use crate::report::{exec_exit_code, FailKind, Failure, Reporter};

pub fn exec(t: &Target, out: &Reporter, command: &str, cargs: &[String]) -> Result<()> {
    let mut c = open(t, out)?;
    let argv: Vec<&str> = cargs.iter().map(String::as_str).collect();
    let json_mode = out.json();
    // --json: one object with the whole output; people see it as it streams.
    let mut collected = Vec::new();
    let mut stdout = std::io::stdout().lock();
    let status = c
        .exec(command, &argv, |chunk| {
            if json_mode {
                collected.extend_from_slice(chunk);
            } else {
                let _ = stdout.write_all(chunk);
                let _ = stdout.flush();
            }
        })
        .map_err(|e| {
            let f = Failure::from(e);
            match f.code() {
                Some(ErrorCode::UnknownCommand) => Failure {
                    message: format!("the device {} has no command `{command}`", t.addr),
                    ..f
                }
                .hint(format!("`{}` lists its commands", t.command("exec help"))),
                _ => f,
            }
        })?;
    drop(stdout);
    let output = String::from_utf8_lossy(&collected).into_owned();
    if status == 0 {
        if json_mode {
            out.result("", json!({"command": command, "status": 0, "output": output}));
        }
        return Ok(());
    }
    let mut f = Failure::new(
        FailKind::Command,
        format!("`{command}` on the device exited with status {status}"),
    );
    f.status = Some(status);
    f.extra.insert("command".into(), json!(command));
    f.extra.insert("output".into(), json!(output));
    let code = exec_exit_code(status);
    Err(if code == 126 {
        f.hint("the status is outside 1-115, so host-cli exits with 126 (see `host-cli --help`)")
    } else {
        f.hint(format!(
            "host-cli exits with {code} = 10 + the status (see `host-cli --help`)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_of_exec_never_meet_host_clis_own() {
        for s in [1, 2, 3, 4, 5, 115] {
            assert_eq!(exec_exit_code(s), (s + 10) as u8);
        }
        for s in [116, 255, 256, 300, -1, i32::MIN, i32::MAX] {
            assert_eq!(exec_exit_code(s), 126, "{s}");
        }
    }
}
