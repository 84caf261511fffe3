//! CRC-32/ISO-HDLC, the checksum that protects every frame.
//!
//! Parameters (the same as Ethernet, zlib and PNG): polynomial `0x04C11DB7`, init `0xFFFFFFFF`,
//! input and output reflected, xorout `0xFFFFFFFF`, check value (`"123456789"`) `0xCBF43926`.
//!
//! Interchangeable back ends compute it:
//! - without the `std` feature, the `crc` crate with a single 256-entry table (1 KiB of flash),
//!   small enough for a Cortex-M0 (8 instructions a byte on a Cortex-M4, 10 on a Cortex-M0);
//! - with `std`, `crc32fast`, which picks a SIMD (PCLMULQDQ / ARMv8 CRC) kernel at run time and
//!   runs one to two orders of magnitude faster. Hosts turn it on; firmware never needs to;
//! - a board's CRC unit, when it installs one ([`crate::hooks::Crc32Unit`]).

/// The `crc` crate's table: 256 entries (1 KiB of flash), or none with feature `crc32-bitwise`
/// (bit by bit, several times slower: for a boot stage that checks two 128-byte records per boot
/// within a few KiB of flash, `firmware/mps2-boot`).
#[cfg(all(not(feature = "std"), not(feature = "crc32-bitwise")))]
type Table = crc::Table<1>;
#[cfg(all(not(feature = "std"), feature = "crc32-bitwise"))]
type Table = crc::NoTable;

#[cfg(not(feature = "std"))]
const ALGO: crc::Crc<u32, Table> = crc::Crc::<u32, Table>::new(&crc::CRC_32_ISO_HDLC);

/// An incremental CRC-32 computation over several slices.
#[derive(Clone)]
pub struct Crc32 {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    #[cfg(feature = "std")]
    Software(crc32fast::Hasher),
    #[cfg(not(feature = "std"))]
    Software(crc::Digest<'static, u32, Table>),
    /// The board's CRC unit ([`crate::hooks::Crc32Unit`]) and the CRC so far.
    Unit(&'static dyn crate::hooks::Crc32Unit, u32),
}

impl Crc32 {
    /// Starts a new computation: on the board's CRC unit when one is installed
    /// ([`crate::hooks::install`]), else in software.
    #[inline]
    pub fn new() -> Self {
        if let Some(unit) = crate::hooks::installed().crc32 {
            return Crc32 {
                inner: Inner::Unit(unit, 0),
            };
        }
        Crc32 {
            // CPU feature detection once per process, not once per frame.
            #[cfg(feature = "std")]
            inner: Inner::Software({
                static PROTO: std::sync::OnceLock<crc32fast::Hasher> = std::sync::OnceLock::new();
                PROTO.get_or_init(crc32fast::Hasher::new).clone()
            }),
            #[cfg(not(feature = "std"))]
            inner: Inner::Software(ALGO.digest()),
        }
    }

    /// Feeds more bytes.
    #[inline]
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.inner {
            Inner::Software(digest) => digest.update(data),
            Inner::Unit(unit, crc) => *crc = unit.update(*crc, data),
        }
    }

    /// Returns the checksum of everything fed so far.
    #[inline]
    pub fn finish(self) -> u32 {
        match self.inner {
            Inner::Software(digest) => digest.finalize(),
            Inner::Unit(_, crc) => crc,
        }
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

    /// A "CRC unit" that is the software one, counting its calls.
    #[cfg(feature = "std")]
    struct CountingUnit(std::sync::atomic::AtomicUsize);
    #[cfg(feature = "std")]
    impl crate::hooks::Crc32Unit for CountingUnit {
        fn update(&self, crc: u32, data: &[u8]) -> u32 {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // The zlib convention in software: the table CRC resumed from `crc`.
            let mut h = crc32fast::Hasher::new_with_initial(crc);
            h.update(data);
            h.finalize()
        }
    }

    #[test]
    #[cfg(feature = "std")]
    fn an_installed_unit_computes_every_crc() {
        static UNIT: CountingUnit = CountingUnit(std::sync::atomic::AtomicUsize::new(0));
        let _serial = crate::hooks::test_lock();
        let software = checksum(b"123456789");
        crate::hooks::install(crate::hooks::Hooks {
            crc32: Some(&UNIT),
            ..crate::hooks::Hooks::NONE
        });
        let mut c = Crc32::new();
        c.update(b"1234");
        c.update(b"56789");
        let on_unit = c.finish();
        crate::hooks::install(crate::hooks::Hooks::NONE);
        assert_eq!(on_unit, software);
        assert_eq!(on_unit, 0xCBF4_3926);
        assert!(UNIT.0.load(std::sync::atomic::Ordering::Relaxed) >= 2);
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
