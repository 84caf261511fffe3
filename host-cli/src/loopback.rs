//! A device in this process: a [`tether_core`] [`Device`] behind a byte stream, for examples,
//! tests and tools that want a peer without a network.
//!
//! Every request frame written to a [`Loopback`] is answered by the device's services at once
//! (streams to their end); reads return those answers. It is the same `Device::handle` the
//! server runs on a board, without the TCP/IP stack in between.
//!
//! ```
//! use tether_core::service::ramstore::RamStore;
//! use tether_core::service::{builtin, exec::Command, Device, DeviceConfig};
//! use tether_host::loopback::Loopback;
//! use tether_host::Client;
//!
//! static COMMANDS: [Command<()>; 1] = [builtin::uptime_command()];
//!
//! let mem: &'static mut [u8] = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
//! let config = DeviceConfig { name: "doc-device", window: 4 };
//! let device = Device::new(config, RamStore::<8>::new(mem), &COMMANDS, (), 4096, 1);
//! let mut client = Client::new(Loopback::new(device));
//! assert_eq!(client.hello("example")?.device, "doc-device");
//! # Ok::<(), tether_host::ClientError>(())
//! ```

use std::io;
use std::time::{Duration, Instant};

use tether_core::codec::Decoder;
use tether_core::service::files::Storage;
use tether_core::service::{Conn, Context, Device, Transport};

/// The largest frame a [`Loopback`] device takes and sends.
pub const LOOPBACK_MAX_FRAME: usize = 4096;

/// How long a waiting command (e.g. a `sleep`) may keep a loopback request unanswered.
const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// A [`Device`] as a byte stream: write requests, read responses.
///
/// The device must be built with `max_frame` [`LOOPBACK_MAX_FRAME`] or less.
pub struct Loopback<'a, C: Context + 'static, S: Storage> {
    device: Device<'a, C, S>,
    conn: Conn,
    decoder: Box<Decoder<LOOPBACK_MAX_FRAME>>,
    scratch: Vec<u8>,
    answers: Vec<u8>,
    read_at: usize,
    booted: Instant,
}

impl<'a, C: Context + 'static, S: Storage> Loopback<'a, C, S> {
    /// The device behind a fresh connection.
    pub fn new(device: Device<'a, C, S>) -> Self {
        Loopback {
            device,
            conn: Conn::new(),
            decoder: Box::new(Decoder::new()),
            scratch: vec![0; LOOPBACK_MAX_FRAME],
            answers: Vec::new(),
            read_at: 0,
            booted: Instant::now(),
        }
    }

    /// The device, e.g. to look at its storage or application state.
    pub fn device(&mut self) -> &mut Device<'a, C, S> {
        &mut self.device
    }

    fn tick(&mut self) {
        self.device.set_uptime(self.booted.elapsed().as_millis() as u64);
    }
}

impl<C: Context + 'static, S: Storage> embedded_io::ErrorType for Loopback<'_, C, S> {
    type Error = io::Error;
}

impl<C: Context + 'static, S: Storage> embedded_io::Write for Loopback<'_, C, S> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, io::Error> {
        self.tick();
        let mut input = buf;
        loop {
            let (used, got) = self.decoder.decode(input);
            input = &input[used..];
            match got {
                Some(Ok(frame)) => {
                    let n = self
                        .device
                        .handle(&mut self.conn, &frame, Transport::Session, &mut self.scratch);
                    self.answers.extend_from_slice(&self.scratch[..n]);
                }
                // A damaged frame: the device's server would answer or drop it; here the
                // decoder has dropped it and the client will time out, as over a network.
                Some(Err(_)) => {}
                None if input.is_empty() => break,
                None => {}
            }
            // A stream (exec output, a download) runs to its end before the next request,
            // as the server does.
            let started = Instant::now();
            while self.conn.streaming() {
                self.device.set_uptime(self.booted.elapsed().as_millis() as u64);
                let n = self.device.resume(&mut self.conn, &mut self.scratch);
                if n == 0 {
                    if started.elapsed() > WAIT_LIMIT {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "a command waited too long"));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                self.answers.extend_from_slice(&self.scratch[..n]);
            }
            if input.is_empty() {
                break;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), io::Error> {
        Ok(())
    }
}

impl<C: Context + 'static, S: Storage> embedded_io::Read for Loopback<'_, C, S> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, io::Error> {
        let pending = &self.answers[self.read_at..];
        if pending.is_empty() {
            // Nothing was asked that has an answer: over a network this would be a timeout.
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the device has no answer pending",
            ));
        }
        let n = pending.len().min(buf.len());
        buf[..n].copy_from_slice(&pending[..n]);
        self.read_at += n;
        if self.read_at == self.answers.len() {
            self.answers.clear();
            self.read_at = 0;
        }
        Ok(n)
    }
}
