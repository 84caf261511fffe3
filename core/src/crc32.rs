//! CRC-32/ISO-HDLC, the checksum that protects every frame.
//!
//! Parameters (the same as Ethernet, zlib and PNG): polynomial `0x04C11DB7`, init `0xFFFFFFFF`,
//! input and output reflected, xorout `0xFFFFFFFF`, check value (`"123456789"`) `0xCBF43926`.
//!
//! Two interchangeable back ends compute it:
//! - without the `std` feature, the `crc` crate with a single 256-entry table (1 KiB of flash),
//!   small enough for a Cortex-M0;
//! - with `std`, `crc32fast`, which picks a SIMD (PCLMULQDQ / ARMv8 CRC) kernel at run time and
//!   runs one to two orders of magnitude faster. Hosts turn it on; firmware never needs to.

#[cfg(not(feature = "std"))]
const ALGO: crc::Crc<u32, crc::Table<1>> = crc::Crc::<u32, crc::Table<1>>::new(&crc::CRC_32_ISO_HDLC);

/// An incremental CRC-32 computation over several slices.
#[derive(Clone)]
pub struct Crc32 {
    #[cfg(feature = "std")]
    inner: crc32fast::Hasher,
    #[cfg(not(feature = "std"))]
    inner: crc::Digest<'static, u32, crc::Table<1>>,
}

impl Crc32 {
    /// Starts a new computation.
    #[inline]
    pub fn new() -> Self {
        Crc32 {
            // CPU feature detection once per process, not once per frame.
            #[cfg(feature = "std")]
            inner: {
                static PROTO: std::sync::OnceLock<crc32fast::Hasher> = std::sync::OnceLock::new();
                PROTO.get_or_init(crc32fast::Hasher::new).clone()
            },
            #[cfg(not(feature = "std"))]
            inner: ALGO.digest(),
        }
    }

    /// Feeds more bytes.
    #[inline]
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
    }

    /// Returns the checksum of everything fed so far.
    #[inline]
    pub fn finish(self) -> u32 {
        #[cfg(feature = "std")]
        return self.inner.finalize();
        #[cfg(not(feature = "std"))]
        return self.inner.finalize();
    }
}

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

/// The CRC-32 of one slice.
#[inline]
pub fn checksum(data: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(data);
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value() {
        assert_eq!(checksum(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn incremental_equals_one_shot() {
        let data = b"the quick brown fox jumps over the lazy dog";
        let mut c = Crc32::new();
        c.update(&data[..7]);
        c.update(&data[7..]);
        assert_eq!(c.finish(), checksum(data));
    }
}
