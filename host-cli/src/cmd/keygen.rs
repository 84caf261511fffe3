//! `keygen FILE`: a new pre-shared key file.

use std::io::Write as _;

use serde_json::json;

use super::{shell_quote, Result};
use crate::config;
use crate::report::{Failure, Reporter};

/// `keygen FILE`: a fresh key, written so that only its owner can read it. Without `--force` the
/// file is created exclusively (an existing key is never lost); with it, the new key is written
/// beside FILE and renamed over it, so FILE is whole at every moment. The key is never printed.
pub fn keygen(out: &Reporter, file: &std::path::Path, force: bool) -> Result<()> {
    let key = tether_host::secure::generate_key();
    let mut text = [0u8; 65];
    key.to_hex(&mut text);
    let shown = file.display().to_string();
    // A fresh account has no ~/.config/tether yet: make it, readable by its owner only, as
    // ssh-keygen makes ~/.ssh.
    let made = match file.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        Some(dir) => {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir).map_err(|e| {
                Failure::local(format!(
                    "cannot create the directory {} for the key ({e})",
                    dir.display()
                ))
                .hint("create it yourself (mkdir -p DIR), or give a FILE in a directory you can write")
            })?;
            Some(dir.to_path_buf())
        }
        None => None,
    };
    let write_new = |path: &std::path::Path| -> std::io::Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(path)?;
        let written = f.write_all(&text).and_then(|()| f.sync_all());
        if written.is_err() {
            let _ = std::fs::remove_file(path);
        }
        written
    };
    let result = if force {
        let mut tmp = file.as_os_str().to_owned();
        tmp.push(format!(".new-{}", std::process::id()));
        let tmp = std::path::PathBuf::from(tmp);
        write_new(&tmp).and_then(|()| {
            std::fs::rename(&tmp, file).inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp);
            })
        })
    } else {
        write_new(file)
    };
    zeroize::Zeroize::zeroize(&mut text);
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Failure::local(format!("{shown} exists: keygen never replaces a key file unless told to"))
                .hint("add --force to replace it (devices that hold the old key must then be given the new one), or pick another FILE"))
        }
        Err(e) => {
            return Err(Failure::local(format!("cannot write the key file {shown} ({e})"))
                .hint("give a FILE in a directory you can write, e.g. ~/.config/tether/NAME.key"))
        }
    }
    if let Some(dir) = made {
        out.note(format_args!("created {} (mode 700) for the key", dir.display()));
    }
    let abs = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let q = shell_quote(&abs.display().to_string());
    let cfg = config::path()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the config file".into());
    out.result(
        format_args!(
            "wrote a new key to {shown} (readable by you only; keep it secret, never commit it)\n\
             use the same file on both sides:\n  \
             sim --key-file {q}\n  \
             host-cli --key-file {q} info      (or TETHER_KEY_FILE={q})\n  \
             key_file = \"{}\"      (under [devices.NAME] in {cfg})",
            abs.display()
        ),
        json!({"key_file": abs.display().to_string()}),
    );
    Ok(())
}
