//! Checksums, all through the `crc` crate. The block checksum: the
//! reference's crc16_ccitt is CRC-16/MCRF4XX (reflected 0x1021, initial
//! 0xffff, no final xor), sent big-endian. The sensors' own checksums:
//! CRC-16/CCITT-FALSE (ADS131M0x) and unreflected CRC-8s (angle sensors).

use ::crc::{Algorithm, Crc, CRC_16_IBM_3740, CRC_16_MCRF4XX, CRC_8_SMBUS};

const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_MCRF4XX);
const CCITT: Crc<u16> = Crc::<u16>::new(&CRC_16_IBM_3740);
const CRC8_07: Crc<u8> = Crc::<u8>::new(&CRC_8_SMBUS);
/// Polynomial 0x1d, no reflection, no final xor (the seed is the caller's).
const CRC8_1D: Crc<u8> = Crc::<u8>::new(&Algorithm {
    width: 8,
    poly: 0x1d,
    init: 0x00,
    refin: false,
    refout: false,
    xorout: 0x00,
    check: 0x37,
    residue: 0x00,
});

/// Checksum of a block's header and payload.
#[inline]
pub fn crc16(data: &[u8]) -> u16 {
    CRC16.checksum(data)
}

/// CRC-16/CCITT-FALSE: polynomial 0x1021, initial 0xffff, unreflected.
pub fn crc16_ccitt(data: &[u8]) -> u16 {
    CCITT.checksum(data)
}

/// CRC-8, polynomial 0x07, unreflected, from `init`.
pub fn crc8_07(init: u8, data: &[u8]) -> u8 {
    let mut d = CRC8_07.digest_with_initial(init);
    d.update(data);
    d.finalize()
}

/// CRC-8, polynomial 0x1d, unreflected, from `init`.
pub fn crc8_1d(init: u8, data: &[u8]) -> u8 {
    let mut d = CRC8_1D.digest_with_initial(init);
    d.update(data);
    d.finalize()
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

    /// Bit by bit, as the chips' datasheets describe them.
    fn bitwise8(poly: u8, init: u8, data: &[u8]) -> u8 {
        data.iter().fold(init, |mut c, &b| {
            c ^= b;
            for _ in 0..8 {
                c = if c & 0x80 != 0 {
                    (c << 1) ^ poly
                } else {
                    c << 1
                };
            }
            c
        })
    }

    #[test]
    fn sensor_checksums() {
        assert_eq!(crc16_ccitt(b"123456789"), 0x29b1);
        let v: Vec<u8> = (0..40u32).map(|i| (i * 97 + 13) as u8).collect();
        for n in 0..v.len() {
            for init in [0, 0x05, 0xff] {
                assert_eq!(crc8_07(init, &v[..n]), bitwise8(0x07, init, &v[..n]));
                assert_eq!(crc8_1d(init, &v[..n]), bitwise8(0x1d, init, &v[..n]));
            }
        }
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
