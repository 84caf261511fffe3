//! Turning frames into bytes and bytes into frames.

mod decoder;
mod encoder;

pub use decoder::{parse_datagram, parse_frame, read_frame, DatagramError, Decoder, OwnedFrame, ReadError};
pub use encoder::{encode, encode_meta, encode_raw, encode_with, write_frame, EncodeError, WriteError};
