//! What every socket type registered with a reactor has in common, written
//! once: a `Drop` that leaves the reactor, and its descriptor
//! (`AsRawFd`, `AsFd`).
//!
//! # Invariants
//!
//! * A socket type is a struct with the fields `io` (the mio socket, which
//!   owns the descriptor) and `registration` (its reactor slot), declared in
//!   that order (others may come between or after them: see `into_io`): the descriptor closes (when `io` drops) before the slot is
//!   freed (when `registration` drops), so the reactor never sees an event
//!   for a slot that a newer socket could already hold.
//! * `Drop` deregisters first; a failure there is only logged (the
//!   descriptor closes right after, which removes it from epoll unless a
//!   duplicate keeps its open file alive; either way the freed slot's new
//!   generation turns away any event still reported for it).
//! * `into_io` (for `into_std`) hands over the descriptor itself, never a
//!   `dup`: at the descriptor limit a `dup` fails, and the socket, already
//!   consumed, would close with it. It deregisters (a failure only logged,
//!   as in `Drop`), frees the slot and returns `io` without closing it.
//!   Any other field of the socket type must need no drop (it is not
//!   dropped), unless the macro is told its name (a listener's
//!   `poll_accept` state): then it is dropped there too.

/// Implements `Drop`, `AsRawFd` and `AsFd` for a socket type whose fields
/// are `io` and `registration` (see the module docs).
macro_rules! registered_socket {
    ($type:ty) => {
        impl Drop for $type {
            fn drop(&mut self) {
                if let Err(e) = self.registration.deregister(&mut self.io) {
                    tracing::debug!(error = %e, "deregister failed");
                }
            }
        }

        impl std::os::fd::AsRawFd for $type {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                std::os::fd::AsRawFd::as_raw_fd(&self.io)
            }
        }

        impl std::os::fd::AsFd for $type {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                std::os::fd::AsFd::as_fd(&self.io)
            }
        }
    };
}

/// [`registered_socket!`] plus `into_io`, for a socket type that can leave
/// its reactor (`into_std`): `$io` is the type of its `io` field.
macro_rules! registered_socket_with_into_io {
    ($type:ty, $io:ty $(, $other:ident)*) => {
        crate::registered::registered_socket!($type);

        impl $type {
            /// Leaves the reactor and returns the socket itself, descriptor
            /// and all: deregistered, its slot freed, nothing closed and
            /// no descriptor needed (see the module docs).
            fn into_io(self) -> $io {
                let mut this = std::mem::ManuallyDrop::new(self);
                let this: &mut Self = &mut this;
                if let Err(e) = this.registration.deregister(&mut this.io) {
                    tracing::debug!(error = %e, "deregister failed");
                }
                // `registration` is dropped here (freeing the slot), and
                // the fields named to the macro, `io` returned; the type's
                // other fields need no drop (module invariant).
                // SAFETY: `this` is never dropped (`ManuallyDrop`) nor used
                // again: each field is moved out (or dropped in place)
                // exactly once.
                unsafe {
                    $(std::ptr::drop_in_place(&mut this.$other);)*
                    drop(std::ptr::read(&this.registration));
                    std::ptr::read(&this.io)
                }
            }
        }
    };
}

pub(crate) use registered_socket;
pub(crate) use registered_socket_with_into_io;
