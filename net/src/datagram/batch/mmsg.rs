//! Linux: a batch is one `recvmmsg(2)` or `sendmmsg(2)`, whose headers
//! (`mmsghdr`, each pointing at an `iovec` and an address) live here.
//!
//! A send's headers are written right before each call, from the borrows
//! the call holds, and followed only by that call; between calls they are
//! stale and nothing reads them.
//!
//! A receive's headers point into the batch's buffers, which are
//! [`RawSlice`]s: the pointers are written once (and again only if the
//! buffers or the control setting change), and stay valid between calls.
//! Before each call only what the kernel wrote into the headers it filled
//! the call before is reset: the sender's length (in and out) and, with
//! control space, its length. Nothing else in a header is written by the
//! kernel, except `msg_len` and `msg_flags`, which are outputs only; and on
//! a failed call nothing is (the error comes before anything is copied
//! back), so an error resets nothing, save one we do not expect
//! (anything but `WouldBlock`), after which every header is reset.

use std::io;
use std::mem::size_of;
use std::os::fd::RawFd;
use std::ptr;

use super::raw_slice::RawSlice;
use super::{Queued, Slot, CONTROLS_CUT, MAX_BATCH};
use crate::raw_addr::RawSockAddr;
use crate::sys;

/// A `RecvBatch`'s headers: one `mmsghdr` and `iovec` per slot (the
/// kernel writes each sender into its slot), and room for each slot's
/// control messages, used when the socket's datagrams may come merged.
pub(super) struct RecvCalls {
    headers: Box<[libc::mmsghdr]>,
    iovecs: RawSlice<libc::iovec>,
    controls: RawSlice<ControlSpace>,
    /// The buffers the headers point at, `(bytes, slot size, slots)`:
    /// `None` until the first receive.
    prepared: Option<(*mut u8, usize, *mut Slot)>,
    /// Whether the headers point at `controls` (else their control
    /// pointers are null).
    controls_set: bool,
    /// How many headers (from the first) the kernel may have written
    /// since they were last reset.
    dirty: usize,
}

/// A slot's room for control messages: `UDP_GRO`'s (24 bytes), and
/// others the socket may have been asked for through libc (a timestamp,
/// a destination address).
#[repr(C, align(8))]
struct ControlSpace([u8; 128]);

/// The sender storage's length, as a header gives it to the kernel.
const NAME_LEN: libc::socklen_t = size_of::<libc::sockaddr_storage>() as libc::socklen_t;

// SAFETY: the raw pointers in `headers`, `iovecs` and `prepared` point
// into the batch that owns this (its `RawSlice`s, and `iovecs` and
// `controls` here), which moves with it; they are followed only by the
// `recvmmsg` of `receive`, which holds `&mut` on all of it.
unsafe impl Send for RecvCalls {}
// SAFETY: through `&RecvCalls` nothing reads or writes anything.
unsafe impl Sync for RecvCalls {}

impl RecvCalls {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            headers: (0..capacity).map(|_| zeroed_header()).collect(),
            iovecs: RawSlice::new(
                (0..capacity)
                    .map(|_| libc::iovec {
                        iov_base: ptr::null_mut(),
                        iov_len: 0,
                    })
                    .collect(),
            ),
            controls: RawSlice::new((0..capacity).map(|_| ControlSpace([0; 128])).collect()),
            prepared: None,
            controls_set: false,
            dirty: 0,
        }
    }

    /// Points every header at its slot of `data` (`size` bytes each) and
    /// its slot's sender storage, through its `iovec`.
    #[cold]
    fn prepare(&mut self, data: &RawSlice<u8>, size: usize, slots: &RawSlice<Slot>) {
        let count = self.headers.len().min(slots.len());
        for (index, iovec) in self.iovecs.slice_mut(0, count).iter_mut().enumerate() {
            *iovec = libc::iovec {
                iov_base: data.ptr_at(index * size).cast(),
                iov_len: size,
            };
        }
        for (index, header) in self.headers[..count].iter_mut().enumerate() {
            let msg = &mut header.msg_hdr;
            msg.msg_name = slots
                .ptr_at(index)
                .wrapping_byte_add(std::mem::offset_of!(Slot, from))
                .cast();
            msg.msg_namelen = NAME_LEN;
            msg.msg_iov = self.iovecs.ptr_at(index);
            msg.msg_iovlen = 1;
            msg.msg_control = ptr::null_mut();
            msg.msg_controllen = 0;
            msg.msg_flags = 0;
        }
        self.prepared = Some((data.ptr_at(0), size, slots.ptr_at(0)));
        self.controls_set = false;
        self.dirty = 0;
    }

    /// Points every header at its control space (`on`) or at none.
    #[cold]
    fn set_controls(&mut self, on: bool) {
        for (index, header) in self.headers.iter_mut().enumerate() {
            let msg = &mut header.msg_hdr;
            if on {
                msg.msg_control = self.controls.ptr_at(index).cast();
                msg.msg_controllen = size_of::<ControlSpace>() as _;
            } else {
                msg.msg_control = ptr::null_mut();
                msg.msg_controllen = 0;
            }
        }
        self.controls_set = on;
    }

    /// One `recvmmsg` into the slots of `data` (`size` bytes each, one per
    /// slot; `data` holds `slots.len() * size` bytes): how many slots it
    /// filled. `merged`: whether the kernel may merge datagrams (then each
    /// slot's control messages are read for the datagrams' length:
    /// `Slot::segment`).
    pub(super) fn receive(
        &mut self,
        fd: RawFd,
        data: &mut RawSlice<u8>,
        size: usize,
        slots: &mut RawSlice<Slot>,
        merged: bool,
    ) -> io::Result<usize> {
        assert!(
            data.len() >= slots.len() * size && slots.len() >= self.headers.len(),
            "a RecvBatch's buffers hold a slot per header"
        );
        if self.prepared != Some((data.ptr_at(0), size, slots.ptr_at(0))) {
            self.prepare(data, size, slots);
        }
        if merged != self.controls_set {
            self.set_controls(merged);
        }
        for header in &mut self.headers[..self.dirty] {
            header.msg_hdr.msg_namelen = NAME_LEN;
            if merged {
                header.msg_hdr.msg_controllen = size_of::<ControlSpace>() as _;
            }
        }
        // Header `i` points at `iovecs[i]`, which points at bytes
        // `i * size..(i + 1) * size` of `data` (in bounds: asserted above),
        // at slot `i`'s sender storage, with its length (reset above if the
        // kernel wrote it), and, if `merged`, at `controls[i]`, with its
        // length (else its control pointer is null). Every pointer was
        // derived from its `RawSlice`'s own (`prepare`, `set_controls`),
        // so it is valid while the slice lives (see `raw_slice`), and all
        // of them are borrowed mutably for the whole call: no reference
        // into them is live.
        // SAFETY: so every pointer the kernel writes through is valid.
        let received = unsafe { sys::recv_many(fd, &mut self.headers) };
        self.dirty = match &received {
            Ok(count) => *count,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(_) => self.headers.len(),
        };
        let received = received?;
        let each = self.headers.iter().zip(slots.slice_mut(0, received));
        for (header, slot) in each {
            slot.len = (header.msg_len as usize).min(size);
            slot.truncated = header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            slot.from_len = header.msg_hdr.msg_namelen;
        }
        if merged {
            let each = self
                .headers
                .iter()
                .zip(slots.slice_mut(0, received))
                .zip(self.controls.slice(0, received));
            for ((header, slot), control) in each {
                slot.segment = if header.msg_hdr.msg_flags & libc::MSG_CTRUNC != 0 {
                    CONTROLS_CUT
                } else {
                    // `size_t` on glibc, `socklen_t` on musl.
                    let len: usize = header.msg_hdr.msg_controllen as _;
                    merged_segment(control, len)
                };
            }
        }
        Ok(received)
    }
}

/// The datagrams' length in a merged buffer, from its `UDP_GRO` control
/// message among the first `len` bytes of `control` (as the kernel wrote
/// them); 0 if there is none (one datagram).
fn merged_segment(control: &ControlSpace, len: usize) -> usize {
    // A `msghdr` that only describes the control bytes, for libc's walk.
    // SAFETY: all-zero is a valid `msghdr` (integers and null pointers).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_control = ptr::from_ref(control).cast_mut().cast();
    msg.msg_controllen = len.min(size_of::<ControlSpace>()) as _;
    // `CMSG_FIRSTHDR` and `CMSG_NXTHDR` return only headers that lie whole
    // within `msg_controllen` bytes of `control` (null past them), so each
    // one read below is inside `control`, aligned (the space is, and
    // headers are `CMSG_ALIGN`ed), and written by the kernel.
    // SAFETY: so every header and datum read is in bounds and initialised.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(&msg);
        while !header.is_null() {
            let cmsg = &*header;
            if cmsg.cmsg_level == libc::SOL_UDP
                && cmsg.cmsg_type == libc::UDP_GRO
                && cmsg.cmsg_len as usize >= libc::CMSG_LEN(size_of::<libc::c_int>() as _) as usize
            {
                let size = ptr::read_unaligned(libc::CMSG_DATA(header).cast::<libc::c_int>());
                return usize::try_from(size).unwrap_or(0);
            }
            header = libc::CMSG_NXTHDR(&msg, header);
        }
    }
    0
}

/// All-zero `mmsghdr`: no name, no buffers, no control data.
fn zeroed_header() -> libc::mmsghdr {
    // SAFETY: all-zero is a valid `mmsghdr` (integers and null pointers).
    unsafe { std::mem::zeroed() }
}

/// A `SendBatch`'s headers, rebuilt for each `sendmmsg`, and whether it
/// segments.
///
/// A queued entry is one message. A segmented entry (`push_segmented`:
/// datagrams of one length, end to end, the last possibly shorter) has a
/// `UDP_SEGMENT` control message giving that length: the kernel builds
/// and routes one packet of up to 64 KiB and cuts it into the datagrams
/// late (in the device, or just before delivery on loopback), so on the
/// wire and to the receiver they are the datagrams pushed. A message is
/// sent whole or not at all.
pub(super) struct SendCalls {
    headers: Vec<libc::mmsghdr>,
    iovecs: Vec<libc::iovec>,
    /// One per segmented entry of the call.
    controls: Vec<SegmentControl>,
}

/// A `UDP_SEGMENT` control message: the header, then the datagrams'
/// length as a `u16`, then zeros to `CMSG_SPACE(2)`. `repr(C)` puts the
/// length right after the header, where `CMSG_DATA` finds it (Linux aligns
/// a control message's data to `size_t`, which the header's size already
/// is a multiple of; a unit test checks against libc), and the explicit
/// padding leaves no byte the kernel reads uninitialised.
#[repr(C)]
#[derive(Clone, Copy)]
struct SegmentControl {
    header: libc::cmsghdr,
    size: u16,
    padding: [u8; SEGMENT_CONTROL_PADDING],
}

/// `CMSG_LEN(2)`: a `UDP_SEGMENT` control message's length.
// SAFETY: `CMSG_LEN` is arithmetic on its argument; it reads no memory.
const SEGMENT_CONTROL_LEN: libc::c_uint = unsafe { libc::CMSG_LEN(2) };

/// The bytes from the length's end to `CMSG_SPACE(2)`.
const SEGMENT_CONTROL_PADDING: usize = {
    // SAFETY: `CMSG_SPACE` is arithmetic on its argument.
    let space = unsafe { libc::CMSG_SPACE(2) } as usize;
    space - size_of::<libc::cmsghdr>() - size_of::<u16>()
};

impl SegmentControl {
    fn new(size: usize) -> Self {
        // SAFETY: all-zero is a valid `cmsghdr` (integers, padding).
        let mut header: libc::cmsghdr = unsafe { std::mem::zeroed() };
        header.cmsg_len = SEGMENT_CONTROL_LEN as _;
        header.cmsg_level = libc::SOL_UDP;
        header.cmsg_type = libc::UDP_SEGMENT;
        Self {
            header,
            // A segmented entry's datagrams are at most
            // `MAX_SEGMENTED_BYTES` long: it fits.
            size: size as u16,
            padding: [0; SEGMENT_CONTROL_PADDING],
        }
    }
}

// SAFETY: as `RecvCalls`': the pointers are written before each `sendmmsg`
// from the borrows `send` holds, and followed only by that call.
unsafe impl Send for SendCalls {}
// SAFETY: through `&SendCalls` nothing reads or writes anything.
unsafe impl Sync for SendCalls {}

impl SendCalls {
    /// Whether this path can send segmented entries.
    pub(super) const SEGMENTS: bool = true;

    pub(super) fn new() -> Self {
        Self {
            headers: Vec::new(),
            iovecs: Vec::new(),
            controls: Vec::new(),
        }
    }

    /// Whether the kernel behind `fd` segments (asked once per process).
    pub(super) fn kernel_segments(fd: RawFd) -> bool {
        sys::udp_segmentation(fd)
    }

    /// One `sendmmsg` of the first [`MAX_BATCH`] entries of `pending`
    /// (whose bytes are in `bytes`), a message each: how many the kernel
    /// took. `segmented`: whether some entry is (without one, the plain
    /// path serves, which never looks for control messages).
    pub(super) fn send<T: RawSockAddr>(
        &mut self,
        fd: RawFd,
        bytes: &[u8],
        pending: &[Queued<T>],
        segmented: bool,
    ) -> io::Result<usize> {
        let pending = &pending[..pending.len().min(MAX_BATCH)];
        self.iovecs.clear();
        self.iovecs.extend(pending.iter().map(|queued| libc::iovec {
            iov_base: bytes.as_ptr().wrapping_add(queued.start).cast_mut().cast(),
            iov_len: queued.len,
        }));
        if segmented {
            self.controls.clear();
            self.controls.extend(
                pending
                    .iter()
                    .filter(|queued| queued.segment != 0)
                    .map(|queued| SegmentControl::new(queued.segment)),
            );
        }
        let iovecs = self.iovecs.as_mut_ptr();
        let mut controls = self.controls.as_mut_ptr();
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
        if segmented {
            let each = self.headers.iter_mut().zip(pending);
            for (header, _) in each.filter(|(_, queued)| queued.segment != 0) {
                header.msg_hdr.msg_control = controls.cast();
                header.msg_hdr.msg_controllen = size_of::<SegmentControl>() as _;
                controls = controls.wrapping_add(1);
            }
        }
        // Header `i` points at `iovecs[i]` and, for a segmented entry, at
        // the next of `controls` (neither vector touched again before the
        // call returns; `controls` holds one per segmented entry, in
        // order, built from these very entries); the iovec points at entry
        // `i`'s bytes in `bytes`, the control message holds its datagrams'
        // length, and the name is its destination in `pending`; the kernel
        // only reads them, during the call, while those borrows hold.
        // SAFETY: so every pointer the kernel reads through is valid.
        unsafe { sys::send_many(fd, &mut self.headers) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_control_message_is_where_libc_puts_it() {
        let control = SegmentControl::new(1200);
        let header = ptr::from_ref(&control.header);
        // SAFETY: `header` points at a valid `cmsghdr`; `CMSG_DATA` only
        // computes an address from it.
        let data = unsafe { libc::CMSG_DATA(header) };
        assert_eq!(data.cast_const(), ptr::from_ref(&control.size).cast());
        // SAFETY: `CMSG_SPACE` is arithmetic on its argument.
        let space = unsafe { libc::CMSG_SPACE(2) } as usize;
        assert!(size_of::<SegmentControl>() >= SEGMENT_CONTROL_LEN as usize);
        assert_eq!(
            size_of::<SegmentControl>(),
            space,
            "no padding of Rust's own"
        );
        assert_eq!(control.size, 1200);
    }

    /// Writes a control message of `level`, `kind` and an int `value` at
    /// `offset` of `space`, as the kernel would.
    fn put(space: &mut ControlSpace, offset: usize, level: i32, kind: i32, value: i32) {
        // SAFETY: `CMSG_LEN` is arithmetic on its argument.
        let len = unsafe { libc::CMSG_LEN(size_of::<i32>() as _) } as usize;
        // SAFETY: all-zero is a valid `cmsghdr` (integers, padding).
        let mut header: libc::cmsghdr = unsafe { std::mem::zeroed() };
        header.cmsg_len = len as _;
        header.cmsg_level = level;
        header.cmsg_type = kind;
        let bytes = &mut space.0[offset..offset + len];
        let head = size_of::<libc::cmsghdr>();
        // SAFETY: `bytes` holds `len` bytes, a header and an int after it
        // (`CMSG_LEN`); both writes are unaligned-safe and in bounds.
        unsafe {
            ptr::write_unaligned(bytes.as_mut_ptr().cast::<libc::cmsghdr>(), header);
            ptr::write_unaligned(bytes[head..].as_mut_ptr().cast::<i32>(), value);
        }
    }

    #[test]
    fn the_merged_length_is_read_from_its_control_message_alone() {
        // SAFETY: `CMSG_SPACE` is arithmetic on its argument.
        let space = unsafe { libc::CMSG_SPACE(size_of::<i32>() as _) } as usize;
        let mut control = ControlSpace([0; 128]);
        // Another control message first (a TOS byte the socket asked
        // for), then `UDP_GRO`'s.
        put(&mut control, 0, libc::SOL_IP, libc::IP_TOS, 5);
        put(&mut control, space, libc::SOL_UDP, libc::UDP_GRO, 1200);
        assert_eq!(merged_segment(&control, 2 * space), 1200);
        // Only what the kernel says it wrote counts.
        assert_eq!(merged_segment(&control, space), 0);
        assert_eq!(merged_segment(&control, 0), 0);
        // A length past the space is cut to it.
        assert_eq!(merged_segment(&control, 1 << 20), 1200);
        // A negative length is no length.
        put(&mut control, space, libc::SOL_UDP, libc::UDP_GRO, -1);
        assert_eq!(merged_segment(&control, 2 * space), 0);
    }
}
