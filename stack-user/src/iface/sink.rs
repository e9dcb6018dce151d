//! Where the frame layer's output goes: the [`FrameSink`] trait (one frame
//! built in place per call) and [`VecSink`], an in-memory sink for tests
//! and benchmarks. The AF_XDP TX batch implements it in
//! [`crate::datapath::xsk`]; this layer knows no AF_XDP type.

/// Something that can send frames: `build` writes a frame into the buffer it
/// is given and returns its length. Returns false when the frame could not be
/// queued (no free buffer).
pub trait FrameSink {
    /// Queues one frame built by `build`.
    fn send(&mut self, build: &mut dyn FnMut(&mut [u8]) -> usize) -> bool;
}

/// A [`FrameSink`] that collects frames in memory (tests, benchmarks).
#[derive(Default, Debug)]
pub struct VecSink {
    /// Frames sent, in order.
    pub frames: Vec<Vec<u8>>,
}

impl FrameSink for VecSink {
    fn send(&mut self, build: &mut dyn FnMut(&mut [u8]) -> usize) -> bool {
        let mut buf = vec![0u8; 2048];
        let len = build(&mut buf);
        if len > 0 {
            buf.truncate(len);
            self.frames.push(buf);
        }
        true
    }
}
