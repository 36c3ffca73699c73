//! Who may be the other end of a hand-over (`#[path]`-included by
//! `handover.rs`, and by its tests): a process of this server's user, or
//! root, as the kernel recorded it (`SO_PEERCRED`). The predecessor checks
//! its successor (who may take its sockets) and the successor its
//! predecessor (whose sockets it may serve: another user's could keep
//! accepting on a listener it hands over, and take the connections meant
//! for this server).

/// Whether a peer running as user `peer_uid` may hand sockets to, or take
/// them from, a process running as `own_uid`: the same user, or root.
pub fn trusted(peer_uid: u32, own_uid: u32) -> bool {
    peer_uid == own_uid || peer_uid == 0
}

/// This process's effective user id.
pub fn euid() -> u32 {
    // SAFETY: `geteuid` reads the process's credentials; it cannot fail.
    unsafe { libc::geteuid() }
}
