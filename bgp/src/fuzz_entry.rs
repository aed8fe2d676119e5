//! Entry points shared by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`, nightly) and the
//! stable corpus replay (`bgp/tests/fuzz_corpus_replay.rs`), so both exercise exactly the same
//! code. Each function panics only when an invariant of this crate is broken — never because
//! the input is malformed.
//!
//! Owns: the never-panic property over [`crate::codec::next_frame`] and
//! [`crate::codec::decode_message`], and the encode→decode round-trip property.
//! Must not touch: anything stateful.

use bytes::Bytes;

use crate::codec::{
    DecodeContext, EXTENDED_MAX_MESSAGE_LEN, EncodeContext, Frame, MAX_MESSAGE_LEN, Message,
    decode_message, encode_message, next_frame,
};

/// The decode contexts every input is tried under: plain, extended messages, a 2-octet AS
/// peer, an internal peer.
const CONTEXTS: [DecodeContext; 4] = [
    DecodeContext {
        max_message_len: MAX_MESSAGE_LEN,
        four_octet_as: true,
        internal_peer: false,
    },
    DecodeContext {
        max_message_len: EXTENDED_MAX_MESSAGE_LEN,
        four_octet_as: true,
        internal_peer: false,
    },
    DecodeContext {
        max_message_len: MAX_MESSAGE_LEN,
        four_octet_as: false,
        internal_peer: false,
    },
    DecodeContext {
        max_message_len: MAX_MESSAGE_LEN,
        four_octet_as: true,
        internal_peer: true,
    },
];

/// Frames `data` as a stream and decodes every complete message under every context.
/// Returns how many messages decoded successfully.
pub fn decode_stream(data: &[u8]) -> usize {
    let mut decoded = 0;
    for context in &CONTEXTS {
        let mut rest = Bytes::copy_from_slice(data);
        while let Ok(Frame::Complete { length }) = next_frame(&rest, context.max_message_len) {
            let message = rest.split_to(length);
            if decode_message(&message, context).is_ok() {
                decoded += 1;
            }
        }
        // The whole input as one message, too (exercises the length-mismatch paths).
        let whole = Bytes::copy_from_slice(data);
        if decode_message(&whole, context).is_ok() {
            decoded += 1;
        }
    }
    decoded
}

fn encode_context(context: &DecodeContext) -> EncodeContext {
    EncodeContext {
        max_message_len: context.max_message_len,
        four_octet_as: context.four_octet_as,
    }
}

/// Round-trip property: whatever decodes and re-encodes must decode again to the same value,
/// and encoding that value again must give the same bytes (normalisation is idempotent).
///
/// # Panics
///
/// When the property is violated (a bug in this crate, never a property of the input).
pub fn decode_update_roundtrip(data: &[u8]) {
    for context in &CONTEXTS {
        let bytes = Bytes::copy_from_slice(data);
        let Ok(first) = decode_message(&bytes, context) else {
            continue;
        };
        if let Message::Update(update) = &first
            && (update.error_handling.treat_as_withdraw || update.other_family_prefixes > 0)
        {
            continue;
        }
        let encode = encode_context(context);
        let Ok(encoded) = encode_message(&first, &encode) else {
            continue;
        };
        let second = match decode_message(&encoded, context) {
            Ok(message) => message,
            Err(error) => panic!("our own encoding does not decode: {error}"),
        };
        let reencoded = match encode_message(&second, &encode) {
            Ok(bytes) => bytes,
            Err(error) => panic!("a decoded message of ours does not encode: {error}"),
        };
        let third = match decode_message(&reencoded, context) {
            Ok(message) => message,
            Err(error) => panic!("re-encoding does not decode: {error}"),
        };
        assert_eq!(second, third, "decode∘encode is not idempotent");
        assert_eq!(encoded, reencoded, "encode∘decode∘encode changed bytes");
    }
}
