//! Any bytes as a trace file: the reader refuses or reads them, never
//! panics, and stops after the End record.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use replay::TraceReader;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = TraceReader::new(Cursor::new(data)) else {
        return;
    };
    while let Ok(Some(_)) = reader.next_record() {}
});
