// Provisioning a board's key at build time (feature `secure`), shared by the build scripts of the
// MPS2 firmware and the serial probe (each `include!`s this file): the pre-shared key from the key
// file named by TETHER_FIRMWARE_KEY_FILE, checked and refused as docs/PORTING.md ("Provisioning a
// key") says, and a fresh random boot seed, written to OUT_DIR/key.rs (`PSK`, `BOOT_SEED`).
// Expects `use std::{env, fs, io::Read as _, path::{Path, PathBuf}, process};` in the includer.

/// The environment variable naming the key file of a `secure` build.
const KEY_FILE_VAR: &str = "TETHER_FIRMWARE_KEY_FILE";
/// The key of the test vectors in docs/PROTOCOL.md §16 (bytes 0x00..=0x1f): public, so refused.
const VECTOR_KEY: [u8; 32] = {
    let mut k = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        k[i] = i as u8;
        i += 1;
    }
    k
};

/// Ends the build script with `message` (cargo shows it under "failed to run custom build
/// command"), never with a panic's backtrace noise.
fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    process::exit(1);
}

/// Feature `secure`: reads and checks the key file, draws a boot seed, writes `key.rs`.
///
/// There is no open `secure` build: a build with the feature and without a key file fails. The
/// open device is the build without `secure` (a device without the feature's code cannot be
/// mistaken for a locked one).
fn provision(out: &Path) {
    println!("cargo:rerun-if-env-changed={KEY_FILE_VAR}");
    let path = match env::var_os(KEY_FILE_VAR) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => fail(&format!(
            "feature `secure` needs the board's key: set {KEY_FILE_VAR} to a key file outside the \
             repository (64 hex digits and a newline, e.g. from `head -c32 /dev/urandom | xxd -p -c64`; \
             see docs/PORTING.md, \"Provisioning a key\"). Build without `secure` for an open device."
        )),
    };
    println!("cargo:rerun-if-changed={}", path.display());
    let full = fs::canonicalize(&path)
        .unwrap_or_else(|e| fail(&format!("{KEY_FILE_VAR}={}: cannot open it: {e}", path.display())));
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if let Ok(repo) = fs::canonicalize(repo) {
        if full.starts_with(&repo) {
            fail(&format!(
                "{KEY_FILE_VAR}={}: the key file is inside the repository ({}); keep keys outside it, \
                 where they cannot be committed",
                path.display(),
                repo.display()
            ));
        }
    }
    let text = fs::read(&full).unwrap_or_else(|e| fail(&format!("{KEY_FILE_VAR}={}: {e}", path.display())));
    let key = parse_key(&text).unwrap_or_else(|why| {
        fail(&format!(
            "{KEY_FILE_VAR}={}: not a key file: {why} (a key file is 64 hex digits and a newline)",
            path.display()
        ))
    });
    if key == VECTOR_KEY || key == [0; 32] {
        fail(&format!(
            "{KEY_FILE_VAR}={}: this key is public (the test vectors' or all zeros); generate a new one",
            path.display()
        ));
    }
    if let Some(mode) = loose_mode(&full) {
        println!(
            "cargo:warning={KEY_FILE_VAR}={}: the key file can be read by other users (mode {mode:o}); run `chmod 600` on it",
            path.display()
        );
    }

    // The generator's boot seed: fresh from the build machine's CSPRNG at every provisioning
    // (this script reruns when the key file or its name changes), so two boards never share one.
    // The board mixes boot-time and traffic timing into it (src/entropy.rs); see the module docs
    // for why that is not a hardware RNG.
    let mut seed = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .unwrap_or_else(|e| fail(&format!("cannot read the boot seed from /dev/urandom: {e}")));

    // key.rs holds the secret: it lives in the target directory only (gitignored), as the ELF.
    let code = format!(
        "/// The board's pre-shared key ({KEY_FILE_VAR} at build time). Secret.\n\
         pub const PSK: [u8; 32] = {key:?};\n\
         /// The random boot seed drawn when this build was provisioned. Secret.\n\
         pub const BOOT_SEED: [u8; 32] = {seed:?};\n"
    );
    let file = out.join("key.rs");
    fs::write(&file, code).unwrap_or_else(|e| fail(&format!("write {}: {e}", file.display())));
    restrict(&file);
}

/// The key file's text as `tether_core::secure::Psk::from_hex` reads it (host-cli and sim read
/// the same file): exactly 64 hex digits, optionally followed by one `\n` or `\r\n`.
fn parse_key(text: &[u8]) -> Result<[u8; 32], &'static str> {
    let digits = text
        .strip_suffix(b"\n")
        .map(|t| t.strip_suffix(b"\r").unwrap_or(t))
        .unwrap_or(text);
    if digits.len() != 64 {
        return Err("not 64 characters before the newline");
    }
    let mut key = [0u8; 32];
    for (byte, pair) in key.iter_mut().zip(digits.chunks_exact(2)) {
        // By hand: `u8::from_str_radix` would also take a leading `+`.
        let nibble = |c: u8| char::from(c).to_digit(16).ok_or("a character that is not a hex digit");
        *byte = (nibble(pair[0])? << 4 | nibble(pair[1])?) as u8;
    }
    Ok(key)
}

/// The file's permission bits when group or others may access it (Unix only).
fn loose_mode(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Makes the generated file readable by its owner only (Unix; elsewhere it keeps its mode).
fn restrict(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o600));
    }
    #[cfg(not(unix))]
    let _ = path;
}
