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

/// Appends one frame.
pub fn push_frame(out: &mut Vec<u8>, tag: u32, body: &[u8]) {
    let len = u32::try_from(body.len()).expect("frames are below 4 GiB");
    assert!(
        len <= FRAME_BYTES_MAX,
        "frame of {len} bytes is over the limit"
    );
    out.extend_from_slice(bytemuck::bytes_of(&FrameHeader { len, tag }));
    out.extend_from_slice(body);
}

/// Parses a header, refusing oversized bodies.
pub fn parse_header(bytes: &[u8; HEADER_BYTES]) -> Result<FrameHeader, u32> {
    let header: FrameHeader = bytemuck::pod_read_unaligned(bytes);
    if header.len > FRAME_BYTES_MAX {
        return Err(header.len);
    }
    Ok(header)
}
