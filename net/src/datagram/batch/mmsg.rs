//! Linux: a batch is one `recvmmsg(2)` or `sendmmsg(2)`, whose headers
//! (`mmsghdr`, each pointing at an `iovec` and an address) live here.
//!
//! The headers' pointers are written right before each call, from the
//! borrows the call holds, and followed only by that call; between calls
//! they are stale and nothing reads them.

use std::io;
use std::mem::size_of;
use std::os::fd::RawFd;
use std::ptr;

use super::{Queued, Slot, MAX_BATCH};
use crate::sys;

/// A `RecvBatch`'s headers: one `mmsghdr` and `iovec` per slot (the
/// kernel writes each sender into its slot).
pub(super) struct RecvCalls {
    headers: Box<[libc::mmsghdr]>,
    iovecs: Box<[libc::iovec]>,
}

// SAFETY: the raw pointers in `headers` and `iovecs` are scratch: written
// before each `recvmmsg` from the `&mut` borrows `receive` holds, followed
// only by that call, and never read otherwise, so moving them to another
// thread moves nothing that is in use.
unsafe impl Send for RecvCalls {}
// SAFETY: through `&RecvCalls` nothing reads or writes anything.
unsafe impl Sync for RecvCalls {}

impl RecvCalls {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            headers: (0..capacity).map(|_| zeroed_header()).collect(),
            iovecs: (0..capacity)
                .map(|_| libc::iovec {
                    iov_base: ptr::null_mut(),
                    iov_len: 0,
                })
                .collect(),
        }
    }

    /// One `recvmmsg` into the slots of `data` (`size` bytes each, one per
    /// entry of `slots`): how many datagrams it received.
    pub(super) fn receive(
        &mut self,
        fd: RawFd,
        data: &mut [u8],
        size: usize,
        slots: &mut [Slot],
    ) -> io::Result<usize> {
        // The iovecs first, then a pointer to them that nothing reborrows
        // before the call.
        let base = data.as_mut_ptr();
        for (index, iovec) in self.iovecs.iter_mut().enumerate() {
            *iovec = libc::iovec {
                iov_base: base.wrapping_add(index * size).cast(),
                iov_len: size,
            };
        }
        let iovecs = self.iovecs.as_mut_ptr();
        let each = self.headers.iter_mut().zip(slots.iter_mut()).enumerate();
        for (index, (header, slot)) in each {
            let msg = &mut header.msg_hdr;
            msg.msg_name = ptr::from_mut(&mut slot.from).cast();
            msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            msg.msg_iov = iovecs.wrapping_add(index);
            msg.msg_iovlen = 1;
            msg.msg_flags = 0;
        }
        // Header `i` points at `iovecs[i]`, which points at bytes
        // `i * size..(i + 1) * size` of `data` (in bounds: `data` holds a
        // slot per header), and at slot `i`'s sender storage, with its
        // length; all are borrowed mutably for the whole call and not
        // touched until it returns.
        // SAFETY: so every pointer the kernel writes through is valid.
        let received = unsafe { sys::recv_many(fd, &mut self.headers) }?;
        for (header, slot) in self.headers.iter().zip(slots.iter_mut()).take(received) {
            slot.len = (header.msg_len as usize).min(size);
            slot.truncated = header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            slot.from_len = header.msg_hdr.msg_namelen;
        }
        Ok(received)
    }
}

/// All-zero `mmsghdr`: no name, no buffers, no control data.
fn zeroed_header() -> libc::mmsghdr {
    // SAFETY: all-zero is a valid `mmsghdr` (integers and null pointers).
    unsafe { std::mem::zeroed() }
}

/// A `SendBatch`'s headers, rebuilt for each `sendmmsg`.
pub(super) struct SendCalls {
    headers: Vec<libc::mmsghdr>,
    iovecs: Vec<libc::iovec>,
}

// SAFETY: as `RecvCalls`': the pointers are written before each `sendmmsg`
// from the borrows `send` holds, and followed only by that call.
unsafe impl Send for SendCalls {}
// SAFETY: through `&SendCalls` nothing reads or writes anything.
unsafe impl Sync for SendCalls {}

impl SendCalls {
    pub(super) fn new() -> Self {
        Self {
            headers: Vec::new(),
            iovecs: Vec::new(),
        }
    }

    /// One `sendmmsg` of the first [`MAX_BATCH`] of `pending` (whose bytes
    /// are in `bytes`): how many datagrams the kernel took.
    pub(super) fn send(
        &mut self,
        fd: RawFd,
        bytes: &[u8],
        pending: &[Queued],
    ) -> io::Result<usize> {
        let pending = &pending[..pending.len().min(MAX_BATCH)];
        self.iovecs.clear();
        self.iovecs.extend(pending.iter().map(|queued| libc::iovec {
            iov_base: bytes.as_ptr().wrapping_add(queued.start).cast_mut().cast(),
            iov_len: queued.len,
        }));
        let iovecs = self.iovecs.as_mut_ptr();
        self.headers.clear();
        self.headers
            .extend(pending.iter().enumerate().map(|(index, queued)| {
                let mut header = zeroed_header();
                if let Some(to) = &queued.to {
                    header.msg_hdr.msg_name = to.as_ptr().cast_mut().cast();
                    header.msg_hdr.msg_namelen = to.len();
                }
                header.msg_hdr.msg_iov = iovecs.wrapping_add(index);
                header.msg_hdr.msg_iovlen = 1;
                header
            }));
        // Header `i` points at `iovecs[i]` (not touched again before the
        // call returns), which points at datagram `i`'s bytes in `bytes`,
        // and at its destination in `pending`; the kernel only reads them,
        // during the call, while those borrows hold.
        // SAFETY: so every pointer the kernel reads through is valid.
        unsafe { sys::send_many(fd, &mut self.headers) }
    }
}
