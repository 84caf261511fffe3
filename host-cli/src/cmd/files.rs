//! `ls`, `stat NAME` and `rm NAME`: the device's files (`put` and `get` are in `transfer`).

use serde_json::json;
use tether_host::units::{bytes, plural};

use super::{check_name, file_refused, open, transfer, Result, Target};
use crate::report::Reporter;

/// `ls`: every file, with its size, and the totals.
pub fn ls(t: &Target, out: &Reporter, retries: u32) -> Result<()> {
    // Over a serial line the client reads a listing again when a page was lost; past its own
    // tries, --retries reopens the line and starts over (TCP loses no pages).
    let retries = if t.addr.is_serial() { retries } else { 0 };
    let files = transfer::with_retries(out, retries, || 0, &mut 0, || Ok(open(t, out)?.list()?))?;
    let mut human = String::new();
    for f in &files {
        human.push_str(&format!("{:>12}  {}\n", bytes(f.size), f.name));
    }
    let total: u64 = files.iter().map(|f| f.size).sum();
    human.push_str(&format!("{}, {}", plural(files.len() as u64, "file"), bytes(total)));
    let list: Vec<_> = files.iter().map(|f| json!({"name": f.name, "size": f.size})).collect();
    out.result(human, json!({"files": list, "count": files.len(), "size": total}));
    Ok(())
}

/// `stat NAME`: a file's size and SHA-256, as the device computes it.
pub fn stat(t: &Target, out: &Reporter, name: &str) -> Result<()> {
    check_name(name)?;
    let mut c = open(t, out)?;
    let (size, sha) = c.stat(name).map_err(|e| file_refused(t, e.into(), name))?;
    let hex = transfer::hex(&sha);
    out.result(
        format_args!("{name}  {}  sha256 {hex}", bytes(size)),
        json!({"name": name, "size": size, "sha256": hex}),
    );
    Ok(())
}

/// `rm NAME`: removes a file.
pub fn rm(t: &Target, out: &Reporter, name: &str) -> Result<()> {
    check_name(name)?;
    let mut c = open(t, out)?;
    c.remove(name).map_err(|e| file_refused(t, e.into(), name))?;
    out.result(format_args!("removed {name}"), json!({"name": name, "removed": true}));
    Ok(())
}
