//! Where there is no `recvmmsg`/`sendmmsg` (and on Linux with `--cfg
//! cellio_portable_datagrams`, which CI uses to test this path): a batch
//! is a loop of single receives or sends, stopped by the first that would
//! block or fails. An error after some datagrams went through ends the
//! loop with what went through; the next call meets it again if it lasts.
//! An error the kernel reports once (an ICMP report on a UDP socket) is
//! then lost, where Linux's `recvmmsg` keeps it for the next call.

use std::io;
use std::os::fd::RawFd;

use super::raw_slice::RawSlice;
use super::{Queued, Slot, MAX_BATCH};
use crate::raw_addr::RawSockAddr;
use crate::sys;

/// Nothing to keep beside the buffers.
pub(super) struct RecvCalls;

impl RecvCalls {
    pub(super) fn new(_capacity: usize) -> Self {
        Self
    }

    /// One receive per slot of `data` (`size` bytes each), until the
    /// socket has no more: how many datagrams arrived.
    pub(super) fn receive(
        &mut self,
        fd: RawFd,
        data: &mut RawSlice<u8>,
        size: usize,
        slots: &mut RawSlice<Slot>,
        _merged: bool,
    ) -> io::Result<usize> {
        for index in 0..slots.len() {
            let slot = &mut slots.slice_mut(index, index + 1)[0];
            let buf = data.slice_mut(index * size, (index + 1) * size);
            match sys::recv_datagram_from(fd, buf) {
                Ok((len, truncated, from)) => {
                    slot.len = len;
                    slot.truncated = truncated;
                    slot.from_len = sys::store_sock_addr(&from, &mut slot.from);
                }
                Err(_) if index > 0 => return Ok(index),
                Err(e) => return Err(e),
            }
        }
        Ok(slots.len())
    }
}

/// Nothing to keep beside the queue: no segmenting here.
pub(super) struct SendCalls;

impl SendCalls {
    /// Never: segmenting needs a control message per entry, which this
    /// path does not build (so no entry is ever segmented here).
    pub(super) const SEGMENTS: bool = false;

    pub(super) fn new() -> Self {
        Self
    }

    /// Never asked (no entry is segmented here).
    pub(super) fn kernel_segments(_fd: RawFd) -> bool {
        false
    }

    /// One send per datagram of the first [`MAX_BATCH`] of `pending`
    /// (bytes in `bytes`), until the kernel refuses one: how many it took.
    /// At most `MAX_BATCH`, as one `sendmmsg`, so that a long batch pays
    /// its budget as it goes (see `send_queued`).
    pub(super) fn send<T: RawSockAddr>(
        &mut self,
        fd: RawFd,
        bytes: &[u8],
        pending: &[Queued<T>],
        _segmented: bool,
    ) -> io::Result<usize> {
        let pending = &pending[..pending.len().min(MAX_BATCH)];
        for (index, queued) in pending.iter().enumerate() {
            let data = &bytes[queued.start..queued.start + queued.len];
            let sent = match &queued.to {
                Some(to) => sys::send_to(fd, data, to),
                None => sys::send(fd, data),
            };
            match sent {
                Ok(_) => {}
                Err(_) if index > 0 => return Ok(index),
                Err(e) => return Err(e),
            }
        }
        Ok(pending.len())
    }
}
