//! Many datagrams per syscall: [`RecvBatch`] and [`SendBatch`], which a
//! datagram socket's `recv_many` and `send_many` fill and empty.
//!
//! On Linux a batch is one `recvmmsg(2)` or `sendmmsg(2)`: up to
//! [`MAX_BATCH`] datagrams for one kernel entry, where `recv_from` and
//! `send_to` make one each. Elsewhere (and with `--cfg
//! cellio_portable_datagrams`) it is a loop of single receives or sends
//! (up to `MAX_BATCH` in the place of one call): the same results, without
//! the saving.
//!
//! # Invariants
//!
//! * A `RecvBatch`'s storage (datagram bytes, sender addresses, and on
//!   Linux the `mmsghdr`s and `iovec`s that point into them) is allocated
//!   once, in `new`. The headers' pointers are written before every
//!   `recvmmsg` from the `&mut` borrow the receive holds, and followed only
//!   by that call.
//! * A receive replaces the batch's contents with what it received
//!   (one datagram at least); a datagram longer than the batch's
//!   datagram size is reported as an error for that datagram alone
//!   (`RecvBatch::iter`), the others are whole.
//! * A `SendBatch` keeps the datagrams not yet sent, and fewer entries
//!   already sent than pending ones (so one that never empties does not
//!   grow). A send removes those the kernel took, in order, and nothing
//!   else: after an error the datagram it belongs to is still the first
//!   one queued ([`SendBatch::skip_next`] drops it). An error the kernel
//!   held for an earlier send (an ICMP report) and reports on the next
//!   one, which it then did not send, is not the first datagram's: the
//!   send is made again, and only an error that comes back is returned.
//!   Its headers are rebuilt for every `sendmmsg` (a push may have moved
//!   the bytes), in vectors that grow only when a round is larger than any
//!   before.
//! * A queued entry is one datagram, or (`push_segmented`, UDP on Linux)
//!   a run of datagrams of one length, end to end, the last possibly
//!   shorter, at most [`MAX_SEGMENTS`] of them and [`MAX_SEGMENTED_BYTES`]
//!   in all: one message with a `UDP_SEGMENT` control message, which the
//!   kernel cuts into those datagrams, sent whole or not at all. Only a
//!   kernel that answers for `UDP_SEGMENT` is given one (an older one
//!   would send the run as one datagram); where the kernel refuses one,
//!   the pending runs are split into single datagrams before anything is
//!   sent again, and the batch segments no more. `len` counts datagrams,
//!   whatever the entries.

use std::borrow::Borrow;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::task::{Poll, Waker};

use crate::datagram::backoff::Backoff;
use crate::datagram::ops::{after_send, not_connected_if_no_peer, poll_backing_off, truncated};
use crate::datagram::DatagramSocket;
use crate::op::{fast_path, future_and_drop, OpState, Side};
use cellio_reactor::budget;
use raw_slice::RawSlice;

#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    not(cellio_portable_datagrams)
))]
mod mmsg;
mod raw_slice;
#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    not(cellio_portable_datagrams)
))]
use mmsg::{RecvCalls, SendCalls};

#[cfg(not(all(
    any(target_os = "linux", target_os = "android"),
    not(cellio_portable_datagrams)
)))]
mod one_by_one;
#[cfg(not(all(
    any(target_os = "linux", target_os = "android"),
    not(cellio_portable_datagrams)
)))]
use one_by_one::{RecvCalls, SendCalls};

/// The most datagrams one batch holds, and one `recvmmsg`/`sendmmsg`
/// passes (Linux's `UIO_MAXIOV`).
pub const MAX_BATCH: usize = 1024;

/// The longest buffer the kernel hands over with receive offload on
/// (`UDP_GRO`): a merged run is at most one IP packet's worth.
pub const MAX_MERGED: usize = 65_535;

/// The most datagrams one segmented message carries (the kernel's
/// `UDP_MAX_SEGMENTS`: 64 for years, 128 in recent kernels such as the
/// 6.18 cellio is tested on; 64 suits both).
pub const MAX_SEGMENTS: usize = 64;

/// The most bytes one segmented message carries: one IPv4 packet's
/// payload (65 535, less 20 for the IP header and 8 for UDP's).
pub const MAX_SEGMENTED_BYTES: usize = 65_507;

/// Buffers for up to [`capacity`](Self::capacity) datagrams, which
/// [`UdpSocket::recv_many`](crate::UdpSocket::recv_many) (and
/// `UnixDatagram`'s) fill in one syscall.
///
/// Allocated once, in [`new`](Self::new); receives into it allocate
/// nothing. After a receive it holds the datagrams received, in order,
/// until the next one.
///
/// # Examples
///
/// An echo server that takes up to 32 datagrams per receive and sends the
/// replies in one call:
///
/// ```no_run
/// use cellio_net::udp::{RecvBatch, SendBatch, UdpSocket};
///
/// # fn main() -> std::io::Result<()> {
/// cellio_runtime::Runtime::new()?.block_on(async {
///     let socket = UdpSocket::bind("127.0.0.1:7001")?;
///     let mut received = RecvBatch::new(32, 2048);
///     let mut replies = SendBatch::new();
///     loop {
///         socket.recv_many(&mut received).await?;
///         for datagram in received.iter() {
///             match datagram {
///                 Ok((bytes, from)) => replies.push(bytes, from)?,
///                 Err(e) => eprintln!("{e}"), // longer than 2048 bytes
///             }
///         }
///         while let Err(e) = socket.send_many(&mut replies).await {
///             eprintln!("{e}");
///             replies.skip_next(); // the reply the error belongs to
///         }
///     }
/// })
/// # }
/// ```
pub struct RecvBatch<S: DatagramSocket> {
    /// `capacity` slots of `datagram_size` bytes each (raw, so that the
    /// pointers the kernel is given stay valid: see `raw_slice`).
    data: RawSlice<u8>,
    datagram_size: usize,
    /// Per slot: what the last receive put there.
    slots: RawSlice<Slot>,
    /// How many slots the last receive filled.
    filled: usize,
    /// How many datagrams they hold (more than `filled` if the kernel
    /// merged some: receive offload).
    datagrams: usize,
    /// Whether the last receive may have merged datagrams: then the
    /// slots' `segment` says how.
    merged: bool,
    /// What the syscalls need beside the buffers (`mmsg`, `one_by_one`).
    calls: RecvCalls,
    _socket: PhantomData<fn() -> S>,
}

/// One received buffer's length, whether it was cut, its sender, and
/// (receive offload) the length of the datagrams merged in it.
pub(super) struct Slot {
    len: usize,
    truncated: bool,
    /// Read only when the batch's last receive may have merged datagrams
    /// (`RecvBatch::merged`), and then written for every slot filled: the
    /// datagrams' length if the kernel merged several into this slot (its
    /// `UDP_GRO` control message; the last may be shorter), 0 for one
    /// datagram, [`CONTROLS_CUT`] if the kernel cut the slot's control
    /// messages (more were asked for than fit), so its datagrams'
    /// boundaries are unknown.
    segment: usize,
    /// The sender, as the kernel wrote it (into this very storage, on
    /// Linux), in `from_len` bytes (0: an unnamed Unix sender).
    from: libc::sockaddr_storage,
    from_len: libc::socklen_t,
}

impl<S: DatagramSocket> RecvBatch<S> {
    /// Buffers for `capacity` datagrams of up to `datagram_size` bytes
    /// each (`capacity` is clamped to `1..=MAX_BATCH`). A longer datagram
    /// is an error for it alone: size the buffers for the largest one the
    /// protocol allows.
    ///
    /// # Panics
    ///
    /// If `capacity × datagram_size` bytes exceed what a `Vec` can hold.
    pub fn new(capacity: usize, datagram_size: usize) -> Self {
        let capacity = capacity.clamp(1, MAX_BATCH);
        let bytes = capacity
            .checked_mul(datagram_size)
            .filter(|&bytes| bytes <= isize::MAX as usize)
            .unwrap_or_else(|| {
                panic!("RecvBatch::new: {capacity} slots of {datagram_size} bytes are too large")
            });
        let slots = (0..capacity)
            .map(|_| Slot {
                len: 0,
                truncated: false,
                segment: 0,
                // SAFETY: all-zero is a valid `sockaddr_storage` (integers).
                from: unsafe { std::mem::zeroed() },
                from_len: 0,
            })
            .collect();
        Self {
            data: RawSlice::new(vec![0u8; bytes].into_boxed_slice()),
            datagram_size,
            slots: RawSlice::new(slots),
            filled: 0,
            datagrams: 0,
            merged: false,
            calls: RecvCalls::new(capacity),
            _socket: PhantomData,
        }
    }

    /// How many buffers (slots) one receive can fill: as many datagrams,
    /// or more with receive offload, where a slot may hold several.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The longest datagram a slot holds whole.
    pub fn datagram_size(&self) -> usize {
        self.datagram_size
    }

    /// How many datagrams the last receive took.
    pub fn len(&self) -> usize {
        self.datagrams
    }

    /// `true` before the first receive, and after [`clear`](Self::clear).
    pub fn is_empty(&self) -> bool {
        self.datagrams == 0
    }

    /// Forgets the datagrams received (the buffers stay).
    pub fn clear(&mut self) {
        self.filled = 0;
        self.datagrams = 0;
        self.merged = false;
    }

    /// The `index`th datagram received: its bytes and sender, or the error
    /// that says it was longer than [`datagram_size`](Self::datagram_size)
    /// (its tail discarded). `None` past [`len`](Self::len). With merged
    /// datagrams (receive offload) this walks the slots: use
    /// [`iter`](Self::iter) to visit them all.
    pub fn get(&self, index: usize) -> Option<io::Result<(&[u8], S::Addr)>> {
        if self.merged {
            return self.iter().nth(index);
        }
        if index >= self.filled {
            return None;
        }
        Some(self.whole(index, self.slots.get(index)))
    }

    /// Slot `index` (`slot`) as one datagram.
    #[inline(always)]
    fn whole(&self, index: usize, slot: &Slot) -> io::Result<(&[u8], S::Addr)> {
        if slot.truncated {
            return Err(truncated::<S>(self.datagram_size));
        }
        let start = index * self.datagram_size;
        let bytes = self.data.slice(start, start + slot.len);
        S::sender_in(&slot.from, slot.from_len).map(|from| (bytes, from))
    }

    /// The datagrams received, in order, each as [`get`](Self::get) gives
    /// it (a slot of merged datagrams gives each of them).
    pub fn iter(&self) -> impl ExactSizeIterator<Item = io::Result<(&[u8], S::Addr)>> + '_ {
        if self.merged {
            Datagrams::Merged(Merged {
                batch: self,
                slot: 0,
                offset: 0,
                remaining: self.datagrams,
            })
        } else {
            Datagrams::Whole(self, 0..self.filled)
        }
    }

    /// Receives up to `capacity` slots now: how many datagrams, at least
    /// one, or `WouldBlock` (or, on a socket whose datagrams may come
    /// merged, `InvalidInput` for slots too small to hold them).
    fn receive(&mut self, socket: &S) -> io::Result<usize> {
        let merged = socket.receives_merged();
        if merged && self.datagram_size < MAX_MERGED {
            self.clear();
            return Err(slots_too_small(self.datagram_size));
        }
        let got = self.calls.receive(
            socket.as_raw_fd(),
            &mut self.data,
            self.datagram_size,
            &mut self.slots,
            merged,
        );
        let Ok(filled) = got else {
            self.clear();
            // Empty at the end of reading (see `or_end_of_reading`).
            return crate::datagram::or_end_of_reading(socket, got, || Ok(0));
        };
        self.filled = filled;
        self.datagrams = filled;
        self.merged = merged;
        if merged {
            self.count_merged();
        }
        Ok(self.datagrams)
    }

    /// Counts the datagrams of slots the kernel may have merged; a slot
    /// that holds one datagram, or whose tail was cut (an error for it
    /// alone), is set to `segment` 0.
    fn count_merged(&mut self) {
        for slot in self.slots.slice_mut(0, self.filled) {
            if slot.truncated || (slot.segment != CONTROLS_CUT && slot.len <= slot.segment) {
                slot.segment = 0;
            }
            if slot.segment != 0 && slot.segment != CONTROLS_CUT {
                self.datagrams += slot.len.div_ceil(slot.segment) - 1;
            }
        }
    }
}

/// `Slot::segment` for a slot whose control messages the kernel cut.
pub(super) const CONTROLS_CUT: usize = usize::MAX;

/// The iterator of [`RecvBatch::iter`]: a datagram per slot, or, where
/// the kernel may have merged some, [`Merged`].
enum Datagrams<'a, S: DatagramSocket> {
    Whole(&'a RecvBatch<S>, std::ops::Range<usize>),
    Merged(Merged<'a, S>),
}

impl<'a, S: DatagramSocket> Iterator for Datagrams<'a, S> {
    type Item = io::Result<(&'a [u8], S::Addr)>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Datagrams::Whole(batch, slots) => {
                let index = slots.next()?;
                Some(batch.whole(index, batch.slots.get(index)))
            }
            Datagrams::Merged(merged) => merged.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = match self {
            Datagrams::Whole(_, slots) => slots.len(),
            Datagrams::Merged(merged) => merged.remaining,
        };
        (left, Some(left))
    }
}

impl<S: DatagramSocket> ExactSizeIterator for Datagrams<'_, S> {}

/// The datagrams of slots the kernel may have merged: slot by slot, and
/// within a merged slot, datagram by datagram.
struct Merged<'a, S: DatagramSocket> {
    batch: &'a RecvBatch<S>,
    /// The slot the next datagram is in.
    slot: usize,
    /// Where in that slot it starts.
    offset: usize,
    remaining: usize,
}

impl<'a, S: DatagramSocket> Merged<'a, S> {
    fn next(&mut self) -> Option<io::Result<(&'a [u8], S::Addr)>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let batch = self.batch;
        let index = self.slot;
        let slot = batch.slots.get(index);
        if slot.segment == 0 {
            self.slot += 1;
            return Some(batch.whole(index, slot));
        }
        if slot.segment == CONTROLS_CUT {
            self.slot += 1;
            return Some(Err(controls_cut()));
        }
        let from = self.offset;
        let to = slot.len.min(from + slot.segment);
        if to == slot.len {
            self.slot += 1;
            self.offset = 0;
        } else {
            self.offset = to;
        }
        let start = index * batch.datagram_size;
        let bytes = batch.data.slice(start + from, start + to);
        Some(S::sender_in(&slot.from, slot.from_len).map(|sender| (bytes, sender)))
    }
}

/// A batch too small for a socket whose datagrams may come merged.
#[cold]
fn slots_too_small(size: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "receive offload (UDP_GRO) is on, and the kernel may merge datagrams into one buffer \
             of up to {MAX_MERGED} bytes: a RecvBatch of {size}-byte slots could lose them \
             (use RecvBatch::new(n, cellio_net::udp::MAX_MERGED))"
        ),
    )
}

/// A slot whose control messages the kernel cut.
#[cold]
fn controls_cut() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "the kernel cut this buffer's control messages (the socket asks for more than a slot's \
         128 bytes hold), so where its merged datagrams begin is unknown",
    )
}

impl<S: DatagramSocket> fmt::Debug for RecvBatch<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvBatch")
            .field("capacity", &self.capacity())
            .field("datagram_size", &self.datagram_size)
            // `len()`: datagrams, more than the slots filled when the
            // kernel merged some (receive offload).
            .field("len", &self.datagrams)
            .field("slots_filled", &self.filled)
            .finish()
    }
}

/// Datagrams queued to be sent together by
/// [`UdpSocket::send_many`](crate::UdpSocket::send_many) (and
/// `UnixDatagram`'s), each with its destination.
///
/// [`push`](Self::push) copies a datagram in; the batch keeps its memory
/// when it empties, so a batch reused for each round allocates only when
/// a round is larger than any before. See [`RecvBatch`] for an example.
pub struct SendBatch<S: DatagramSocket> {
    /// The queued datagrams' bytes, end to end.
    bytes: Vec<u8>,
    queued: Vec<Queued<S::BatchTarget>>,
    /// The first entry not yet sent.
    next: usize,
    /// Datagrams in the entries not yet sent.
    datagrams: usize,
    /// Whether an entry not yet sent is segmented.
    segmented: bool,
    /// Whether `push_segmented` makes segmented entries: the socket type
    /// and the syscall path can, the user did not turn it off, the kernel
    /// did not refuse it.
    segment_offload: bool,
    calls: SendCalls,
    _socket: PhantomData<fn() -> S>,
}

/// A queued entry: where its bytes are, where it goes (`None`: the
/// connected peer), and its datagrams' length if it is a segmented run
/// (0: one datagram of `len` bytes).
pub(super) struct Queued<T> {
    start: usize,
    len: usize,
    to: Option<T>,
    segment: usize,
}

impl<T> Queued<T> {
    /// How many datagrams the entry is.
    fn datagrams(&self) -> usize {
        if self.segment == 0 {
            1
        } else {
            self.len.div_ceil(self.segment)
        }
    }
}

impl<S: DatagramSocket> Default for SendBatch<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: DatagramSocket> SendBatch<S> {
    /// An empty batch; it allocates as datagrams are pushed.
    pub fn new() -> Self {
        Self {
            bytes: Vec::new(),
            queued: Vec::new(),
            next: 0,
            datagrams: 0,
            segmented: false,
            segment_offload: S::SEGMENTS && SendCalls::SEGMENTS,
            calls: SendCalls::new(),
            _socket: PhantomData,
        }
    }

    /// An empty batch with room for `datagrams` datagrams of `bytes`
    /// bytes in all.
    pub fn with_capacity(datagrams: usize, bytes: usize) -> Self {
        let mut batch = Self::new();
        batch.bytes.reserve(bytes);
        batch.queued.reserve(datagrams);
        batch
    }

    /// Queues `data` as one datagram to `to`. Fails only for a destination
    /// no datagram can be sent to (for a Unix socket, an unnamed address);
    /// the kernel's own refusals (a datagram too long, say) come from the
    /// send.
    pub fn push(&mut self, data: &[u8], to: impl Borrow<S::Addr>) -> io::Result<()> {
        let to = S::batch_target(to.borrow())?;
        self.queue(data, Some(to), 0);
        Ok(())
    }

    /// Queues `data` as one datagram to the peer the socket is connected to
    /// (the send fails with `NotConnected` if there is none).
    pub fn push_to_peer(&mut self, data: &[u8]) {
        self.queue(data, None, 0);
    }

    /// Queues `data` as datagrams of `segment_size` bytes each (the last
    /// holds what is left) to `to`: with [segment
    /// offload](Self::segment_offload), one message per
    /// [`MAX_SEGMENTS`] datagrams (or [`MAX_SEGMENTED_BYTES`]), which the
    /// kernel routes as one packet and cuts into the datagrams late (Linux's
    /// `UDP_SEGMENT`, "GSO"); without it, each datagram alone, as
    /// [`push`](Self::push) would. The receiver gets the same datagrams
    /// either way.
    ///
    /// A segmented message is sent whole or not at all: an error for it
    /// belongs to all its datagrams, and [`skip_next`](Self::skip_next)
    /// drops them all. Fails for a `segment_size` of 0, and where
    /// [`push`](Self::push) fails.
    ///
    /// # Examples
    ///
    /// Sending a file to one peer in datagrams of 1 200 bytes (54 to a
    /// message: 65 507 bytes at most):
    ///
    /// ```no_run
    /// use cellio_net::udp::{SendBatch, UdpSocket};
    ///
    /// # async fn stream_out(socket: &UdpSocket, peer: std::net::SocketAddr, file: &[u8]) -> std::io::Result<()> {
    /// let mut batch = SendBatch::new();
    /// batch.push_segmented(file, 1200, peer)?;
    /// socket.send_many(&mut batch).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn push_segmented(
        &mut self,
        data: &[u8],
        segment_size: usize,
        to: impl Borrow<S::Addr>,
    ) -> io::Result<()> {
        let to = S::batch_target(to.borrow())?;
        self.queue_segmented(data, segment_size, Some(to))
    }

    /// [`push_segmented`](Self::push_segmented) to the peer the socket is
    /// connected to.
    pub fn push_segmented_to_peer(&mut self, data: &[u8], segment_size: usize) -> io::Result<()> {
        self.queue_segmented(data, segment_size, None)
    }

    fn queue_segmented(
        &mut self,
        data: &[u8],
        size: usize,
        to: Option<S::BatchTarget>,
    ) -> io::Result<()> {
        if size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "push_segmented: a segment size of 0 bytes",
            ));
        }
        if data.len() <= size {
            self.queue(data, to, 0);
        } else if self.segment_offload && size <= MAX_SEGMENTED_BYTES {
            let per_message = (MAX_SEGMENTED_BYTES / size).min(MAX_SEGMENTS) * size;
            for part in data.chunks(per_message) {
                let segment = if part.len() > size { size } else { 0 };
                self.queue(part, to.clone(), segment);
            }
        } else {
            for datagram in data.chunks(size) {
                self.queue(datagram, to.clone(), 0);
            }
        }
        Ok(())
    }

    fn queue(&mut self, data: &[u8], to: Option<S::BatchTarget>, segment: usize) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(data);
        self.queued.push(Queued {
            start,
            len: data.len(),
            to,
            segment,
        });
        if segment == 0 {
            self.datagrams += 1;
        } else {
            self.datagrams += data.len().div_ceil(segment);
            self.segmented = true;
        }
    }

    /// Splits every segmented entry not yet sent into its datagrams, each
    /// an entry: the kernel will not segment them. Allocates (a vector as
    /// long as the entries left), once per batch.
    #[cold]
    fn unsegment(&mut self) {
        let pending: Vec<Queued<S::BatchTarget>> = self.queued.drain(self.next..).collect();
        for queued in pending {
            if queued.segment == 0 {
                self.queued.push(queued);
                continue;
            }
            let end = queued.start + queued.len;
            for start in (queued.start..end).step_by(queued.segment) {
                self.queued.push(Queued {
                    start,
                    len: queued.segment.min(end - start),
                    to: queued.to.clone(),
                    segment: 0,
                });
            }
        }
        self.segmented = false;
    }

    /// Drops what was sent (after each send and skip): all of it once
    /// everything was; else, once the sent entries are at least half of
    /// the queue, by moving the pending ones (whose bytes follow every
    /// sent one's, also after `unsegment`) to the front. So a batch that
    /// never quite empties holds fewer sent entries than pending ones, and
    /// the moves cost, amortised, a constant per entry sent; nothing is
    /// allocated.
    fn compact(&mut self) {
        if self.next == 0 {
            return;
        }
        if self.next == self.queued.len() {
            self.clear();
        } else if self.next * 2 >= self.queued.len() {
            let base = self.queued[self.next].start;
            self.bytes.drain(..base);
            self.queued.drain(..self.next);
            for queued in &mut self.queued {
                queued.start -= base;
            }
            self.next = 0;
        }
    }

    /// How many datagrams are queued and not yet sent.
    pub fn len(&self) -> usize {
        self.datagrams
    }

    /// `true` if nothing is waiting to be sent.
    pub fn is_empty(&self) -> bool {
        self.next == self.queued.len()
    }

    /// Drops the first datagram not yet sent (after a send's error, the
    /// one the error belongs to), or the first segmented message's
    /// datagrams, all of them; `false` if there was none.
    pub fn skip_next(&mut self) -> bool {
        if self.is_empty() {
            return false;
        }
        self.datagrams -= self.queued[self.next].datagrams();
        self.next += 1;
        self.compact();
        true
    }

    /// Whether [`push_segmented`](Self::push_segmented) makes segmented
    /// messages: true for a UDP batch on Linux until
    /// [`set_segment_offload(false)`](Self::set_segment_offload), or until
    /// the kernel refuses it; false for a Unix one, and elsewhere.
    ///
    /// Where the kernel has no `UDP_SEGMENT` (before Linux 4.18) or refuses
    /// it for a send (a device that cannot checksum; datagrams longer than
    /// the path's MTU, which the kernel would otherwise fragment; the
    /// socket's `SO_NO_CHECK`), the batch splits the runs it holds into
    /// single datagrams, sends them that way, and stops segmenting: this
    /// method then returns false. Nothing is lost or merged either way. An
    /// error that a run's first datagram, sent alone, gets as well (a
    /// destination with port 0) is the run's own, not a refusal: segmenting
    /// stays on, and the error belongs to all the run's datagrams.
    pub fn segment_offload(&self) -> bool {
        self.segment_offload
    }

    /// Turns [segment offload](Self::segment_offload) on or off for the
    /// sends to come (on has no effect where it is not available).
    pub fn set_segment_offload(&mut self, on: bool) {
        self.segment_offload = on && S::SEGMENTS && SendCalls::SEGMENTS;
    }

    /// The key ([`target_key`](crate::datagram::backoff::target_key)) of
    /// the destination of the first datagram not yet sent: a hash of its
    /// address's bytes, or 0 for the connected peer (as a plain send's) or
    /// an empty batch. What a given-up send's wait belongs to
    /// (`DatagramIo::poll_send_many`): the same batch, refilled for
    /// another peer, is another destination.
    pub(crate) fn next_target_key(&self) -> u64 {
        use crate::raw_addr::RawSockAddr;
        match self.queued.get(self.next) {
            Some(Queued { to: Some(to), .. }) => {
                // SAFETY: a `RawSockAddr` points at `len()` bytes of
                // address, which the kernel reads; `to` is borrowed for
                // as long as the slice lives.
                let bytes = unsafe {
                    std::slice::from_raw_parts(to.as_ptr().cast::<u8>(), to.len() as usize)
                };
                crate::datagram::backoff::target_key(bytes)
            }
            _ => 0,
        }
    }

    /// Whether the first datagram not yet sent names its destination
    /// (else it goes to the connected peer, or nothing is queued).
    pub(crate) fn next_has_address(&self) -> bool {
        self.queued
            .get(self.next)
            .is_some_and(|next| next.to.is_some())
    }

    /// Drops every queued datagram (the memory stays).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.queued.clear();
        self.next = 0;
        self.datagrams = 0;
        self.segmented = false;
    }

    /// Sends what the kernel takes now, in order: how many went (at least
    /// one), or the error of the first (`WouldBlock` if the socket's
    /// buffer is full), never one the kernel held for an earlier send. An
    /// empty batch sends nothing and returns 0.
    fn send_some(&mut self, socket: &S) -> io::Result<usize> {
        if self.is_empty() {
            return Ok(0);
        }
        let fd = socket.as_raw_fd();
        if self.segmented {
            if self.segment_offload && !SendCalls::kernel_segments(fd) {
                self.segment_offload = false;
            }
            if !self.segment_offload {
                self.unsegment();
            }
        }
        let pending = &self.queued[self.next..];
        let entries = match send_checked(&mut self.calls, fd, &self.bytes, pending, self.segmented)
        {
            Err(e) if pending[0].segment != 0 && segmenting_refused(&e) => {
                // The error may be the run's own (a destination that
                // refuses any datagram: port 0), not the kernel refusing to
                // segment: its first datagram, sent alone, tells.
                let first = &pending[0];
                let alone = [Queued {
                    start: first.start,
                    len: first.segment.min(first.len),
                    to: first.to.clone(),
                    segment: 0,
                }];
                match send_checked(&mut self.calls, fd, &self.bytes, &alone, false) {
                    Ok(_) => {
                        tracing::debug!(error = %e, "the kernel refused a segmented UDP send; sending datagram by datagram from now on");
                        self.segment_offload = false;
                        self.unsegment();
                        // The run's first datagram went, alone.
                        Ok(1)
                    }
                    Err(again) if again.raw_os_error() == e.raw_os_error() => Err(e),
                    Err(again) => Err(again),
                }
            }
            sent => sent,
        };
        let entries = not_connected_if_no_peer(entries)?;
        let sent = if self.segmented {
            let sent = &self.queued[self.next..self.next + entries];
            sent.iter().map(Queued::datagrams).sum()
        } else {
            entries
        };
        self.next += entries;
        self.datagrams -= sent;
        self.compact();
        Ok(sent)
    }
}

/// One send of `pending` ([`SendCalls::send`]), asked again if its error
/// may be one the kernel held for an earlier send: the kernel reports (and
/// clears) such an error (an ICMP report on a connected UDP socket, a Unix
/// peer gone) before it sends anything, so the first datagram was not
/// sent, and the error need not be its own; asked again, the kernel says
/// whether it is.
fn send_checked<T: crate::raw_addr::RawSockAddr>(
    calls: &mut SendCalls,
    fd: std::os::fd::RawFd,
    bytes: &[u8],
    pending: &[Queued<T>],
    segmented: bool,
) -> io::Result<usize> {
    match calls.send(fd, bytes, pending, segmented) {
        Err(e) if may_be_held_for_an_earlier_send(&e) => {
            let again = calls.send(fd, bytes, pending, segmented);
            if again.as_ref().err().and_then(io::Error::raw_os_error) != e.raw_os_error() {
                tracing::debug!(error = %e, "a send reported an error held for an earlier one; sending on");
            }
            again
        }
        sent => sent,
    }
}

/// Whether `error`, for a batch's first datagram, may be one the kernel
/// held for the socket (`sk_err`, which the next send reports and clears
/// before sending anything): what an ICMP report leaves on a connected UDP
/// socket (`icmp_err_convert`, and `EMSGSIZE` for "fragmentation needed"),
/// or `ECONNRESET` on a Unix one whose peer closed. Each can also be the
/// datagram's own, so the send is asked again.
fn may_be_held_for_an_earlier_send(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(
            libc::ECONNREFUSED
                | libc::ECONNRESET
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::ENOPROTOOPT
                | libc::EPROTO
                | libc::EOPNOTSUPP
                | libc::EMSGSIZE
        )
    )
}

/// Whether `error`, for a segmented message, is the kernel refusing to
/// segment it (`EIO`: the route's device cannot checksum; `EINVAL`: a
/// datagram longer than the path's MTU, or a socket option that rules
/// segmenting out; `EMSGSIZE`, which a single datagram then reports
/// again if it is its own).
fn segmenting_refused(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::EMSGSIZE)
    )
}

impl<S: DatagramSocket> fmt::Debug for SendBatch<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendBatch")
            .field("len", &self.len())
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// Receives into `batch` without waiting: the count, or `WouldBlock`.
pub(crate) fn try_recv_many<S: DatagramSocket>(
    socket: &S,
    batch: &mut RecvBatch<S>,
) -> io::Result<usize> {
    crate::ready::try_now(socket.registration().rx(), || {
        batch.receive(socket).map(|n| (n, false))
    })
}

/// Sends from `batch` without waiting: the count sent (all, or as many as
/// the socket's buffer took), or the first datagram's error.
pub(crate) fn try_send_many<S: DatagramSocket>(
    socket: &S,
    batch: &mut SendBatch<S>,
) -> io::Result<usize> {
    let before = batch.len();
    // A full buffer arms write interest (as a send future's does) before
    // `try_now` records it, so that `writable()` is woken when room comes.
    crate::ready::try_now(socket.registration().tx(), || {
        match send_queued(socket, batch, None) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                socket.arm_writable()?;
                if batch.len() < before {
                    Ok((before - batch.len(), true))
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e),
            Ok(()) => Ok((before, false)),
        }
    })
}

/// One attempt of a batch send: sends until the batch is empty (`Ok`), the
/// socket's buffer is full (`WouldBlock`) or the kernel refuses a datagram
/// (its error). What went is gone from the batch either way.
///
/// With a `waker` (a task's send, whose attempt spent one unit of the
/// budget before it, as every operation's does), each call after the first
/// is paid for first: one unit for each datagram the call before it sent
/// (that one's own unit included), then one for itself. With the budget
/// spent, the attempt stops there, `Ok` with the rest of the batch still
/// queued and the waker woken: its future (or `DatagramIo::poll_send_many`)
/// returns `Pending` and sends on at the task's next poll, after the
/// worker's other tasks. So a long batch sends about a budget's worth of
/// datagrams per poll (at least one call's: one `sendmmsg` of
/// [`MAX_BATCH`] spends a default budget), as that many `send_to` would,
/// where it held its worker until the last one went. A batch that one call
/// takes whole costs one unit, as a `recv_many` does: the charge is made
/// only before a second call. Without a waker (`try_send_many`,
/// `try_complete`) it sends everything the socket takes.
pub(crate) fn send_queued<S: DatagramSocket>(
    socket: &S,
    batch: &mut SendBatch<S>,
    waker: Option<&Waker>,
) -> io::Result<()> {
    let mut sent = batch.send_some(socket)?;
    while !batch.is_empty() {
        if let Some(waker) = waker {
            if !pay_for_another_call(sent, waker) {
                return Ok(());
            }
        }
        sent = batch.send_some(socket)?;
    }
    Ok(())
}

/// Before another call of one batch send: charges the `sent` datagrams of
/// the call before (less the unit it spent), then spends one unit for the
/// next call. `false` (with `waker` woken) if none was left for it.
#[cold]
#[inline(never)]
fn pay_for_another_call(sent: usize, waker: &Waker) -> bool {
    budget::consume(u32::try_from(sent).unwrap_or(u32::MAX).saturating_sub(1));
    budget::poll_proceed(waker).is_ready()
}

/// Future of [`UdpSocket::recv_many`](crate::UdpSocket::recv_many) (and
/// `UnixDatagram`'s): how many datagrams arrived in the batch, at least
/// one.
#[must_use = "futures do nothing unless polled"]
pub struct RecvMany<'a, S: DatagramSocket> {
    socket: &'a S,
    batch: &'a mut RecvBatch<S>,
    op: OpState,
}

impl<'a, S: DatagramSocket> RecvMany<'a, S> {
    pub(crate) fn new(socket: &'a S, batch: &'a mut RecvBatch<S>) -> Self {
        Self {
            socket,
            batch,
            op: OpState::new(),
        }
    }

    fn poll_with(&mut self, waker: Option<&Waker>) -> Poll<io::Result<usize>> {
        let (socket, batch) = (self.socket, &mut *self.batch);
        self.op.poll(Side::rx(socket.registration()), waker, || {
            batch.receive(socket).map(|n| (n, false))
        })
    }

    fast_path!(usize);
}

/// Future of [`UdpSocket::send_many`](crate::UdpSocket::send_many) (and
/// `UnixDatagram`'s): every queued datagram sent, and how many that was.
#[must_use = "futures do nothing unless polled"]
pub struct SendMany<'a, S: DatagramSocket> {
    socket: &'a S,
    batch: &'a mut SendBatch<S>,
    /// Datagrams queued when the send began: all of them went when the
    /// batch is empty.
    queued: usize,
    op: OpState,
    backoff: Backoff,
}

impl<'a, S: DatagramSocket> SendMany<'a, S> {
    pub(crate) fn new(socket: &'a S, batch: &'a mut SendBatch<S>) -> Self {
        Self {
            socket,
            queued: batch.len(),
            batch,
            op: OpState::new(),
            backoff: Backoff::new(),
        }
    }

    fn poll_with(&mut self, waker: Option<&Waker>) -> Poll<io::Result<usize>> {
        let (socket, batch, queued) = (self.socket, &mut *self.batch, self.queued);
        let polled = poll_backing_off::<S, _>(&mut self.op, &mut self.backoff, waker, |op| {
            let side = Side::tx(socket.registration());
            // A Unix socket's full cell may be another peer's than the
            // batch's next datagram's.
            let by_address = S::ROOM_MAY_GO_UNANNOUNCED && batch.next_has_address();
            let attempt = || {
                let sent = send_queued(socket, batch, waker).map(|()| queued);
                // What failed, if anything, is the batch's next datagram.
                after_send(socket, sent, batch.next_has_address())
            };
            if by_address {
                op.poll_attempting(side, waker, attempt)
            } else {
                op.poll(side, waker, attempt)
            }
        });
        match polled {
            // Datagrams still queued after a success: the attempt stopped
            // for the budget (see `send_queued`).
            Poll::Ready(Ok(_)) if !batch.is_empty() => self.yielded(),
            polled => polled,
        }
    }

    /// Part of the batch went and the budget is spent (`send_queued`): the
    /// operation completed (and released the cell, if it held it), the
    /// task is woken; the next poll starts a fresh one on the rest.
    #[cold]
    #[inline(never)]
    fn yielded(&mut self) -> Poll<io::Result<usize>> {
        self.op = OpState::new();
        // Datagrams went: a wait for a full peer starts from the shortest
        // delay again.
        self.backoff.reset();
        Poll::Pending
    }

    fast_path!(usize);
}

future_and_drop!(RecvMany<S: DatagramSocket>, socket, usize, rx);
future_and_drop!(SendMany<S: DatagramSocket>, socket, usize, tx);

/// `Debug` for the two batch futures: their socket and batch.
macro_rules! debug_socket_and_batch {
    ($($name:ident),*) => {$(
        impl<S: DatagramSocket> fmt::Debug for $name<'_, S> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("socket", &self.socket)
                    .field("batch", &self.batch)
                    .finish_non_exhaustive()
            }
        }
    )*};
}

debug_socket_and_batch!(RecvMany, SendMany);
