//! Fuzz target: the BMP station's reader (framing and decoding, RFC 7854) never panics on
//! arbitrary bytes; a bad stream ends in an error that closes its connection.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = topologyd::bmp::codec::decode_stream(data);
});
