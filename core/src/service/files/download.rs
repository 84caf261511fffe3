//! Download (Get): a file streamed as `GetData` frames and closed by `FileDone`.

use super::{FileInfo, FileName, Storage};
use crate::codec::encode_with;
use crate::msg;
use crate::service::{stats::Service, Conn, Context, Device, Failure, Stream};
use crate::wire::{ErrorCode, Frame, FrameSpec, Kind};

impl<C: Context + 'static, S: Storage> Device<'_, C, S> {
    pub(in crate::service) fn get(
        &mut self,
        conn: &mut Conn,
        frame: &Frame<'_>,
        out: &mut [u8],
    ) -> Result<usize, Failure> {
        self.stats.count(Service::Get);
        let req = frame.meta::<msg::Get<'_>>().map_err(|c| (c, "get metadata"))?;
        let info = self.storage.stat(req.name).map_err(|e| (e.into(), "no such file"))?;
        if req.offset > info.size {
            return Err((ErrorCode::BadOffset, "offset past the end of the file"));
        }
        let name = FileName::try_from(req.name).map_err(|_| (ErrorCode::InvalidName, "name too long"))?;
        conn.stream = Stream::Get {
            id: frame.request_id(),
            name,
            offset: req.offset,
            info,
        };
        Ok(self.resume(conn, out))
    }

    pub(in crate::service) fn get_step(
        &mut self,
        id: u32,
        name: FileName,
        offset: u64,
        info: FileInfo,
        out: &mut [u8],
    ) -> (usize, Stream) {
        if offset >= info.size {
            self.stats.downloads = self.stats.downloads.wrapping_add(1);
            let done = msg::FileDone {
                size: info.size,
                sha256: info.sha256,
            };
            return (
                self.reply(out, FrameSpec::response(Kind::Get, id), &done, &[]),
                Stream::Idle,
            );
        }
        let chunk = (info.size - offset).min(self.max_chunk() as u64) as usize;
        let storage = &mut self.storage;
        let mut failed = None;
        let n = encode_with(out, FrameSpec::more(Kind::Get, id), &msg::GetData { offset }, |room| {
            let want = chunk.min(room.len());
            match storage.read(&name, offset, &mut room[..want]) {
                Ok(0) => {
                    failed = Some(ErrorCode::Internal);
                    Err(0)
                }
                Ok(got) => Ok(got),
                Err(e) => {
                    failed = Some(e.into());
                    Err(0)
                }
            }
        });
        match (n, failed) {
            (Ok(n), None) => {
                // The frame says how much was read: the body length, recovered from the header.
                let got = u32::from_le_bytes([out[12], out[13], out[14], out[15]]) as u64;
                (
                    n,
                    Stream::Get {
                        id,
                        name,
                        offset: offset + got,
                        info,
                    },
                )
            }
            (_, code) => {
                let code = code.unwrap_or(ErrorCode::Internal);
                let detail = format_args!("reading {name} at {offset} failed (file removed or replaced?)");
                (self.error(out, Kind::Get, id, code, detail), Stream::Idle)
            }
        }
    }
}
