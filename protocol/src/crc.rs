//! The block checksum: the reference's crc16_ccitt is CRC-16/MCRF4XX
//! (reflected 0x1021, initial 0xffff, no final xor), sent big-endian.

use ::crc::{Crc, CRC_16_MCRF4XX};

const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_MCRF4XX);

/// Checksum of a block's header and payload.
#[inline]
pub fn crc16(data: &[u8]) -> u16 {
    CRC16.checksum(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's bytewise algorithm, as a cross-check.
    fn reference(buf: &[u8]) -> u16 {
        let mut crc: u16 = 0xffff;
        for &b in buf {
            let mut data = b ^ (crc & 0xff) as u8;
            data ^= data << 4;
            crc = ((((data as u16) << 8) | (crc >> 8)) ^ (data >> 4) as u16) ^ ((data as u16) << 3);
        }
        crc
    }

    #[test]
    fn matches_reference() {
        assert_eq!(crc16(b"123456789"), 0x6f91);
        let mut v = Vec::new();
        for i in 0..300u32 {
            v.push((i.wrapping_mul(2654435761) >> 13) as u8);
            assert_eq!(crc16(&v), reference(&v));
        }
    }
}
