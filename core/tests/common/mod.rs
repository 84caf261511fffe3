//! What the test-vector suites share: the document they check and its hex notation.
//!
//! `docs/PROTOCOL.md` holds every vector as a fenced block of hex, 16 bytes a line in lower case,
//! tagged by its info string (`hex`, `hex secure`, `packet`); each suite checks that its blocks
//! and its vectors agree both ways.

#![allow(dead_code)] // each suite uses what it needs

#[cfg(feature = "update")]
pub mod flash;

/// The protocol specification, as the vectors are checked against it.
pub const PROTOCOL: &str = include_str!("../../../docs/PROTOCOL.md");

/// Hex text in the document's format: 16 bytes a line, separated by spaces.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(|line| line.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Bytes of hex text; whitespace is ignored.
pub fn from_hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).expect("hex digit"))
        .collect()
}

/// The contents of the fenced code blocks of `doc` whose info string is exactly `info`, each
/// with its lines trimmed and joined by `\n`.
pub fn fenced_blocks(doc: &str, info: &str) -> Vec<String> {
    let open = format!("```{info}");
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in doc.lines() {
        let trimmed = line.trim();
        match current.as_mut() {
            None if trimmed == open => current = Some(Vec::new()),
            None => {}
            Some(lines) if trimmed == "```" => {
                blocks.push(lines.join("\n"));
                current = None;
            }
            Some(lines) => lines.push(trimmed),
        }
    }
    assert!(current.is_none(), "unterminated ```{info} block");
    blocks
}

/// Asserts that the ```` ```info ```` blocks of the document are exactly the `vectors` (name, hex
/// text): none in the document that is not a vector, none of the vectors missing from it.
pub fn assert_document_holds(info: &str, vectors: &[(&str, &str)]) {
    let blocks = fenced_blocks(PROTOCOL, info);
    for block in &blocks {
        assert!(
            vectors.iter().any(|(_, hex)| hex == block),
            "docs/PROTOCOL.md has a ```{info} block that is not a test vector:\n{block}"
        );
    }
    for (name, hex) in vectors {
        assert!(
            blocks.iter().any(|b| b == hex),
            "vector {name} is missing from docs/PROTOCOL.md"
        );
    }
}
