//! Numbered datagrams and runs of them (for the offload tests), and
//! setting an integer socket option the library does not offer.

use std::os::fd::RawFd;

/// Datagram `i` of `len` bytes: its number, then bytes that depend on it.
pub fn datagram(i: u32, len: usize) -> Vec<u8> {
    let mut bytes = i.to_le_bytes().to_vec();
    bytes.extend((0..len.saturating_sub(4)).map(|k| (k as u32 * 13 + i) as u8));
    bytes.truncate(len);
    bytes
}

/// `count` datagrams from number `first` on, of `size` bytes but the last
/// (`last` bytes): the datagrams, and their bytes end to end.
pub fn run_of(first: u32, count: u32, size: usize, last: usize) -> (Vec<Vec<u8>>, Vec<u8>) {
    let datagrams: Vec<Vec<u8>> = (first..first + count)
        .map(|i| datagram(i, if i + 1 == first + count { last } else { size }))
        .collect();
    let bytes = datagrams.concat();
    (datagrams, bytes)
}

/// Sets an integer socket option on `fd`, failing the test if the kernel
/// refuses it.
pub fn set_int_option(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) {
    // SAFETY: `value` is an int, valid for reads of the length passed.
    let answer = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(answer, 0, "{}", std::io::Error::last_os_error());
}
