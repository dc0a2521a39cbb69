//! The fields inside a frame's body: fixed-width little-endian integers,
//! varints, and length-prefixed bytes.

use super::CodecError;
use super::varint::{self, VarintError};

pub(super) fn put_varint(out: &mut Vec<u8>, value: u64) {
    varint::put(out, value);
}

pub(super) fn put_zigzag(out: &mut Vec<u8>, value: i64) {
    varint::put(out, varint::zigzag(value));
}

pub(super) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    varint::put(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Reads a body's fields in order; each read names its field for the error.
#[derive(Debug)]
pub(super) struct Fields<'a> {
    input: &'a [u8],
}

impl<'a> Fields<'a> {
    pub(super) fn new(input: &'a [u8]) -> Self {
        Self { input }
    }

    pub(super) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], CodecError> {
        let (head, rest) = self
            .input
            .split_first_chunk::<N>()
            .ok_or(cut_short(field))?;
        self.input = rest;
        Ok(*head)
    }

    pub(super) fn u8(&mut self, field: &'static str) -> Result<u8, CodecError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(super) fn u32_le(&mut self, field: &'static str) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    pub(super) fn u64_le(&mut self, field: &'static str) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    pub(super) fn varint(&mut self, field: &'static str) -> Result<u64, CodecError> {
        let (value, len) = varint::get(self.input).map_err(|error| match error {
            VarintError::Incomplete => cut_short(field),
            VarintError::Overflow => CodecError::Overflow { field },
            VarintError::Overlong => CodecError::Malformed {
                field,
                problem: "overlong varint",
            },
        })?;
        self.input = &self.input[len..];
        Ok(value)
    }

    pub(super) fn varint_u32(&mut self, field: &'static str) -> Result<u32, CodecError> {
        u32::try_from(self.varint(field)?).map_err(|_| CodecError::Overflow { field })
    }

    pub(super) fn zigzag(&mut self, field: &'static str) -> Result<i64, CodecError> {
        Ok(varint::unzigzag(self.varint(field)?))
    }

    /// Length-prefixed bytes.
    pub(super) fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], CodecError> {
        let len =
            usize::try_from(self.varint(field)?).map_err(|_| CodecError::Overflow { field })?;
        if len > self.input.len() {
            return Err(cut_short(field));
        }
        let (bytes, rest) = self.input.split_at(len);
        self.input = rest;
        Ok(bytes)
    }

    /// Length-prefixed UTF-8.
    pub(super) fn string(&mut self, field: &'static str) -> Result<String, CodecError> {
        let bytes = self.bytes(field)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| CodecError::Malformed {
            field,
            problem: "not UTF-8",
        })
    }

    /// Every byte must belong to a field, so each value has one encoding.
    pub(super) fn finish(self) -> Result<(), CodecError> {
        if self.input.is_empty() {
            Ok(())
        } else {
            Err(CodecError::Malformed {
                field: "frame",
                problem: "bytes follow the last field",
            })
        }
    }
}

fn cut_short(field: &'static str) -> CodecError {
    CodecError::Malformed {
        field,
        problem: "the frame ends inside it",
    }
}
