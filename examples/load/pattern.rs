//! Message contents: different for every (connection, sequence number),
//! cheap to generate and to check.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// A well-mixed 64-bit seed for message `seq` of connection `conn`.
#[inline]
fn seed(conn: u64, seq: u64) -> u64 {
    // splitmix64 finalizer over (conn, seq).
    let mut z = conn.wrapping_mul(GOLDEN) ^ seq.wrapping_add(1).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `buf` with the contents of message `seq` of connection `conn`:
/// 8-byte words `seed ^ (index * GOLDEN)`, so every word differs and any
/// flipped, lost, duplicated or misrouted byte changes the comparison.
#[inline]
pub fn fill(buf: &mut [u8], conn: u64, seq: u64) {
    let base = seed(conn, seq);
    let mut k = 0u64;
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        chunk.copy_from_slice(&(base ^ k.wrapping_mul(GOLDEN)).to_le_bytes());
        k += 1;
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let word = (base ^ k.wrapping_mul(GOLDEN)).to_le_bytes();
        tail.copy_from_slice(&word[..tail.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differs_per_message_and_connection() {
        let mut a = [0u8; 21];
        let mut b = [0u8; 21];
        fill(&mut a, 1, 2);
        fill(&mut b, 1, 2);
        assert_eq!(a, b);
        fill(&mut b, 1, 3);
        assert_ne!(a, b);
        fill(&mut b, 2, 2);
        assert_ne!(a, b);
    }
}
