//! A device thread's sleep: until its device sends, a command comes, `info` is due, or the
//! bridge stops — nothing in between.
//!
//! The thread waits in `poll(2)` on two descriptors: its session's (the TCP connection or the
//! serial port, [`AnyLink`]'s) and its [`Waker`]'s, an eventfd that the router signals after
//! queueing a command for it, and the bridge after `Shared::stop` is set. Why `poll(2)` through
//! `rustix` rather than `mio`: the wait is two descriptors in one thread, and level-triggered
//! `poll(2)` needs no registration to keep in step with sessions that come and go (each
//! reconnection is a new descriptor), no epoll instance per device (256 devices would be 256 more
//! descriptors), and no care for edge-triggered readiness next to the bytes the session's buffers
//! already hold (see `AnyClient::has_buffered_input`). rustix is already in the build (through
//! `tempfile`), and its `poll` and `eventfd` are safe functions over `BorrowedFd`s. Other Unix
//! systems, which have no eventfd, get a socket pair instead. Elsewhere (or should the eventfd
//! not open) the wait falls back to the session's read timeout, as before: see [`Waker::wait`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tether_host::net::AnyLink;

/// How long a wait lasts at most without a descriptor to sleep on (the fallback): the most a
/// command waits then.
pub const FALLBACK_STEP: Duration = Duration::from_millis(20);

/// Why a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woke {
    /// The session has input (or was closed, or failed): read it.
    Input,
    /// The waker was signalled: a command came, or the bridge stops.
    Woken,
    /// The time ran out (or a signal cut the wait short).
    Quiet,
}

/// Wakes one device thread from [`Waker::wait`]; shared by the thread, the router and the
/// bridge.
pub struct Waker {
    #[cfg(unix)]
    fds: Option<Fds>,
    waits: AtomicU64,
    woken: AtomicU64,
}

#[cfg(unix)]
struct Fds {
    /// What the thread polls and drains.
    wait: std::os::fd::OwnedFd,
    /// What is written to wake it: a socket pair's other end; `None`: `wait` itself (an eventfd).
    wake: Option<std::os::fd::OwnedFd>,
}

#[cfg(unix)]
impl Fds {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn new() -> std::io::Result<Fds> {
        use rustix::event::{eventfd, EventfdFlags};
        let wait = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Fds { wait, wake: None })
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn new() -> std::io::Result<Fds> {
        let (a, b) = std::os::unix::net::UnixStream::pair()?;
        a.set_nonblocking(true)?;
        b.set_nonblocking(true)?;
        Ok(Fds {
            wait: a.into(),
            wake: Some(b.into()),
        })
    }
}

impl std::fmt::Debug for Waker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waker")
            .field("waits", &self.waits())
            .field("woken", &self.woken())
            .finish_non_exhaustive()
    }
}

impl Default for Waker {
    fn default() -> Self {
        Waker::new()
    }
}

impl Waker {
    /// A waker; without its descriptor (none could be opened, or not a Unix system) waits fall
    /// back to the session's read timeout.
    pub fn new() -> Waker {
        Waker {
            #[cfg(unix)]
            fds: match Fds::new() {
                Ok(fds) => Some(fds),
                Err(e) => {
                    eprintln!("tether-bridge: cannot open a waker ({e}): this device is polled every 20 ms");
                    None
                }
            },
            waits: AtomicU64::new(0),
            woken: AtomicU64::new(0),
        }
    }

    /// Wakes the thread from its wait, or from its next one if it is not waiting now. Any
    /// number of wakes before a wait count as one.
    pub fn wake(&self) {
        #[cfg(unix)]
        if let Some(fds) = &self.fds {
            let fd = fds.wake.as_ref().unwrap_or(&fds.wait);
            // Failing with EAGAIN means the waker is signalled already.
            let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
        }
    }

    /// Sleeps until `session` (when given) has input, the waker is signalled, or `timeout`
    /// has passed. A signal is consumed here: whatever it announced (a queued command, the stop
    /// flag) must be looked at after this returns, and a wake that comes later ends the next
    /// wait at once. Without a descriptor, a wait with a session returns [`Woke::Input`] at once
    /// (its read timeout is the wait), and one without sleeps at most [`FALLBACK_STEP`].
    pub fn wait(&self, session: Option<&AnyLink>, timeout: Duration) -> Woke {
        self.waits.fetch_add(1, Ordering::Relaxed);
        #[cfg(unix)]
        if let Some(fds) = &self.fds {
            if let Some(woke) = self.poll(fds, session, timeout) {
                return woke;
            }
        }
        if session.is_some() {
            return Woke::Input;
        }
        std::thread::sleep(timeout.min(FALLBACK_STEP));
        Woke::Quiet
    }

    /// The wait on the descriptors; `None` when `poll(2)` fails (the fallback then).
    #[cfg(unix)]
    fn poll(&self, fds: &Fds, session: Option<&AnyLink>, timeout: Duration) -> Option<Woke> {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        // A long deadline is cut to a day: the caller waits again.
        let timeout = Timespec::try_from(timeout.min(Duration::from_secs(86_400))).ok()?;
        let mut polled = [
            PollFd::new(&fds.wait, PollFlags::IN),
            PollFd::new(&fds.wait, PollFlags::IN),
        ];
        let polled = match session {
            Some(s) => {
                polled[1] = PollFd::new(s, PollFlags::IN);
                &mut polled[..]
            }
            None => &mut polled[..1],
        };
        match poll(polled, Some(&timeout)) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Some(Woke::Quiet),
            Err(e) => {
                eprintln!("tether-bridge: cannot wait for a device ({e}): polling it instead");
                return None;
            }
        }
        let woken = !polled[0].revents().is_empty();
        // Readable, hung up or failed: a read says which.
        let input = polled.get(1).is_some_and(|p| !p.revents().is_empty());
        if woken {
            self.woken.fetch_add(1, Ordering::Relaxed);
            let mut drain = [0u8; 64];
            while matches!(rustix::io::read(&fds.wait, &mut drain), Ok(n) if n > 0) {}
        }
        Some(if input {
            Woke::Input
        } else if woken {
            Woke::Woken
        } else {
            Woke::Quiet
        })
    }

    /// How many waits ended, for any reason.
    pub fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }

    /// How many waits the waker ended.
    pub fn woken(&self) -> u64 {
        self.woken.load(Ordering::Relaxed)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn a_wake_ends_the_wait_and_is_consumed() {
        let w = Arc::new(Waker::new());
        // A wake before the wait ends it at once, however many there were.
        w.wake();
        w.wake();
        assert_eq!(w.wait(None, Duration::from_secs(60)), Woke::Woken);
        assert_eq!(w.wait(None, Duration::from_millis(1)), Woke::Quiet, "consumed");
        // A wake from another thread ends a wait in progress.
        let waking = {
            let w = w.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                w.wake();
            })
        };
        let began = Instant::now();
        assert_eq!(w.wait(None, Duration::from_secs(60)), Woke::Woken);
        assert!(began.elapsed() < Duration::from_secs(30));
        waking.join().unwrap();
        assert_eq!((w.waits(), w.woken()), (3, 2));
    }
}
