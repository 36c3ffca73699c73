//! Message contents: different for every (connection, sequence number),
//! cheap to generate and to check.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
const SEQ_MUL: u64 = 0xD6E8_FEB8_6659_FD93;
const MIX1: u64 = 0xBF58_476D_1CE4_E5B9;
const MIX2: u64 = 0x94D0_49BB_1331_11EB;
// The multipliers' inverses modulo 2^64 (each is odd): `seq_of` undoes
// `seed` with them.
const SEQ_MUL_INV: u64 = 0xCFEE_444D_8B59_A89B;
const MIX1_INV: u64 = 0x96DE_1B17_3F11_9089;
const MIX2_INV: u64 = 0x3196_42B2_D24D_8EC3;

/// A well-mixed 64-bit seed for message `seq` of connection `conn`.
#[inline]
fn seed(conn: u64, seq: u64) -> u64 {
    // splitmix64 finalizer over (conn, seq).
    let mut z = conn.wrapping_mul(GOLDEN) ^ seq.wrapping_add(1).wrapping_mul(SEQ_MUL);
    z = (z ^ (z >> 30)).wrapping_mul(MIX1);
    z = (z ^ (z >> 27)).wrapping_mul(MIX2);
    z ^ (z >> 31)
}

/// The sequence number of connection `conn`'s message that begins with
/// `head` (its first word is its seed: every step of [`seed`] can be
/// undone). For bytes that are no message of `conn`'s, some number: check
/// the whole message against [`fill`]'s before believing it.
pub fn seq_of(conn: u64, head: [u8; 8]) -> u64 {
    let mut z = u64::from_le_bytes(head);
    // Undo `z ^ (z >> s)`: xor in the shifts by s, 2s, ... below 64.
    z ^= (z >> 31) ^ (z >> 62);
    z = z.wrapping_mul(MIX2_INV);
    z ^= (z >> 27) ^ (z >> 54);
    z = z.wrapping_mul(MIX1_INV);
    z ^= (z >> 30) ^ (z >> 60);
    (z ^ conn.wrapping_mul(GOLDEN))
        .wrapping_mul(SEQ_MUL_INV)
        .wrapping_sub(1)
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
    fn the_sequence_number_is_read_back_from_the_first_word() {
        assert_eq!(SEQ_MUL.wrapping_mul(SEQ_MUL_INV), 1);
        assert_eq!(MIX1.wrapping_mul(MIX1_INV), 1);
        assert_eq!(MIX2.wrapping_mul(MIX2_INV), 1);
        let mut buf = [0u8; 8];
        for conn in [0, 1, 99, 1 << 40, u64::MAX] {
            for seq in [0, 1, 2, 1000, 1 << 33, u64::MAX - 1, u64::MAX] {
                fill(&mut buf, conn, seq);
                assert_eq!(seq_of(conn, buf), seq, "conn {conn}");
            }
        }
        // Another connection's message reads as some other number.
        fill(&mut buf, 1, 5);
        assert_ne!(seq_of(2, buf), 5);
    }

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
