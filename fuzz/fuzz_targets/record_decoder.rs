//! Any bytes as a stream of record frames: the decoder refuses or decodes
//! them, never panics, and whatever it decodes encodes back to the very
//! bytes it came from (every record has one encoding).
#![no_main]

use ft_logging::{Decoded, Decoder, Encoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut decoder = Decoder::new();
    let mut encoder = Encoder::new();
    let mut input = data;
    let mut encoded = Vec::new();
    while let Ok(Decoded::Record(record, len)) = decoder.decode(input) {
        encoded.clear();
        encoder.encode(&record, &mut encoded);
        assert_eq!(encoded, input[..len], "{record:?} has two encodings");
        input = &input[len..];
    }
});
