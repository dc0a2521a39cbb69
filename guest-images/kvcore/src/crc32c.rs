//! CRC-32C (Castagnoli), table-driven and written out by hand: the crates
//! that compute it use SSE4.2, which guests cannot run.

/// The reflected Castagnoli polynomial.
const POLYNOMIAL: u32 = 0x82f6_3b78;

/// The CRC of every byte value, built at compile time.
const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut index = 0;
    while index < 256 {
        let mut crc = index as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLYNOMIAL
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[index] = crc;
        index += 1;
    }
    table
};

/// A CRC-32C computed over several pieces.
#[derive(Clone, Copy)]
pub(crate) struct Crc32c(u32);

impl Crc32c {
    pub(crate) fn new() -> Self {
        Self(!0)
    }

    pub(crate) fn update(mut self, bytes: &[u8]) -> Self {
        for &byte in bytes {
            self.0 = TABLE[((self.0 ^ u32::from(byte)) & 0xff) as usize] ^ (self.0 >> 8);
        }
        self
    }

    pub(crate) fn finish(self) -> u32 {
        !self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_check_values() {
        assert_eq!(Crc32c::new().update(b"123456789").finish(), 0xe306_9283);
        assert_eq!(Crc32c::new().finish(), 0);
        // RFC 3720 B.4: 32 bytes of zeros.
        assert_eq!(Crc32c::new().update(&[0; 32]).finish(), 0x8a91_36aa);
        assert_eq!(
            Crc32c::new().update(b"1234").update(b"56789").finish(),
            0xe306_9283
        );
    }
}
