//! `io::{stdin, stdout}`: with the process's descriptors 0 and 1 pointed
//! at pipes for the length of the test, 200 KiB read from stdin come back
//! whole, and what is written to stdout (and flushed) reaches the pipe in
//! order; two handles writing at once interleave writes of up to
//! `PIPE_BUF` bytes whole, as `io`'s docs say. One test in this file: it borrows descriptors 0 and 1 of the
//! whole test process.
//!
//! Not under Miri: its isolation has no descriptors to redirect.
#![cfg(not(miri))]

#[path = "util/redirect.rs"]
mod redirect;
mod util;

use std::io::{Read, Write};

use redirect::{pipe, redirect, restore};

use cellio_runtime::io::{stdin, stdout};

fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// What each of the two handles writing at once writes: `MESSAGES`
/// messages of `MESSAGE` bytes (at most `PIPE_BUF`, 4 KiB on Linux).
const MESSAGE: usize = 4096;
const MESSAGES: usize = 64;

#[test]
fn stdin_is_read_whole_and_stdout_written_in_order() {
    let len = 200 * 1024;
    let (in_read, mut in_write) = pipe();
    let (mut out_read, out_write) = pipe();
    let saved_in = redirect(0, &in_read);
    let saved_out = redirect(1, &out_write);
    drop((in_read, out_write));
    let feeder = std::thread::spawn(move || {
        let data: Vec<u8> = (0..len).map(pattern).collect();
        in_write.write_all(&data)
        // Dropped here: end of input (descriptor 0 is the only read end
        // left besides the handle's duplicate).
    });
    let collector = std::thread::spawn(move || {
        let mut all = Vec::new();
        out_read.read_to_end(&mut all).map(|_| all)
    });
    let result = util::run(move || async move {
        let mut input = Vec::new();
        let n = stdin()?.read_to_end(&mut input).await?;
        let mut out = stdout()?;
        // Written back in pieces, reversed in each 1 000-byte chunk.
        for chunk in input.chunks(1000) {
            let reversed: Vec<u8> = chunk.iter().rev().copied().collect();
            out.write_all(&reversed).await?;
        }
        out.flush().await?;
        // Two more handles write at once, on two blocking threads.
        let writers = [b'a', b'b'].map(|byte| {
            cellio_runtime::spawn(async move {
                let (mut out, message) = (stdout()?, vec![byte; MESSAGE]);
                for _ in 0..MESSAGES {
                    out.write_all(&message).await?;
                }
                out.flush().await
            })
        });
        for writer in writers {
            writer.await.unwrap()?;
        }
        std::io::Result::Ok(n)
    });
    // Descriptors 0 and 1 back before anything can fail: the collector
    // sees the end once the last write end (descriptor 1) is gone.
    restore(0, saved_in);
    restore(1, saved_out);
    feeder.join().unwrap().unwrap();
    let written = collector.join().unwrap().unwrap();
    assert_eq!(result.unwrap(), len);
    let expected: Vec<u8> = (0..len)
        .map(pattern)
        .collect::<Vec<_>>()
        .chunks(1000)
        .flat_map(|chunk| chunk.iter().rev().copied().collect::<Vec<_>>())
        .collect();
    assert_eq!(written.len(), len + 2 * MESSAGES * MESSAGE);
    assert!(written[..len] == expected, "stdout's bytes differ");
    // Cut into each other only between messages: each is whole.
    let mut counts = [0, 0];
    for message in written[len..].chunks(MESSAGE) {
        let byte = message[0];
        assert!(
            message.iter().all(|&b| b == byte) && (byte == b'a' || byte == b'b'),
            "a message of up to PIPE_BUF bytes was cut"
        );
        counts[usize::from(byte == b'b')] += 1;
    }
    assert_eq!(counts, [MESSAGES, MESSAGES]);
}
