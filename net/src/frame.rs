//! The fixed frame header shared by the peer transport and the client protocol.

use bytemuck::{Pod, Zeroable};

/// Largest frame body accepted; a larger declared length is a protocol violation.
pub const FRAME_BYTES_MAX: u32 = 16 * 1024 * 1024;

/// `len` bytes of body follow; `tag` is the shard (peer frames) or the kind/status (client).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct FrameHeader {
    pub len: u32,
    pub tag: u32,
}

pub const HEADER_BYTES: usize = std::mem::size_of::<FrameHeader>();
const _: () = assert!(HEADER_BYTES == 8);

/// A body too large for one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a frame body of {bytes} bytes exceeds the limit of {FRAME_BYTES_MAX}")]
pub struct FrameTooLarge {
    pub bytes: usize,
}

/// Appends one frame, or refuses a body over `FRAME_BYTES_MAX` (leaving `out` unchanged).
pub fn push_frame(out: &mut Vec<u8>, tag: u32, body: &[u8]) -> Result<(), FrameTooLarge> {
    let too_large = FrameTooLarge { bytes: body.len() };
    let len = u32::try_from(body.len()).map_err(|_| too_large)?;
    if len > FRAME_BYTES_MAX {
        return Err(too_large);
    }
    out.extend_from_slice(bytemuck::bytes_of(&FrameHeader { len, tag }));
    out.extend_from_slice(body);
    Ok(())
}

/// Parses a header, refusing oversized bodies.
pub fn parse_header(bytes: &[u8; HEADER_BYTES]) -> Result<FrameHeader, u32> {
    let header: FrameHeader = bytemuck::pod_read_unaligned(bytes);
    if header.len > FRAME_BYTES_MAX {
        return Err(header.len);
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversized_body_is_refused_and_nothing_is_written() {
        let mut out = vec![7u8];
        let body = vec![0u8; FRAME_BYTES_MAX as usize + 1];
        assert_eq!(
            push_frame(&mut out, 1, &body),
            Err(FrameTooLarge { bytes: body.len() })
        );
        assert_eq!(out, vec![7u8]);
        push_frame(&mut out, 1, &body[..FRAME_BYTES_MAX as usize]).expect("at the limit");
        assert_eq!(out.len(), 1 + HEADER_BYTES + FRAME_BYTES_MAX as usize);
    }
}
