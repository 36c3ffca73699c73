//! What every socket type registered with a reactor has in common, written
//! once: a `Drop` that leaves the reactor, and its descriptor
//! (`AsRawFd`, `AsFd`).
//!
//! # Invariants
//!
//! * A socket type is a struct with two fields, `io` (the mio socket, which
//!   owns the descriptor) and `registration` (its reactor slot), declared in
//!   that order: the descriptor closes (when `io` drops) before the slot is
//!   freed (when `registration` drops), so the reactor never sees an event
//!   for a slot that a newer socket could already hold.
//! * `Drop` deregisters first; a failure there is only logged (the
//!   descriptor closes right after, which removes it from epoll anyway).

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

pub(crate) use registered_socket;
