//! `sos_filter` (the reference's sos_filter.c): a cascade of second-order
//! sections in fixed point, with an input offset and scale, applied to
//! each raw sample a `trigger_analog` checks.
//!
//! The arithmetic follows the reference exactly: every product is taken
//! in 64 bits, rounded half up at the last discarded bit, shifted by the
//! fractional bits and checked against the 32-bit range; sums of state
//! wrap as 32-bit integers do.

use crate::command::{Args, CmdResult, Module, Shutdown};
use crate::mcu::Mcu;

const BAD_SECTION: Shutdown = Shutdown("Filter section index larger than max_sections");

pub const STATIC_STRINGS: &[&str] = &[BAD_SECTION.0];

/// One section: coefficients b0, b1, b2, a1, a2 (a0 is 1) and state z.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Section {
    pub coeff: [i32; 5],
    pub state: [i32; 2],
}

#[derive(Debug, Clone, Default)]
pub struct SosFilter {
    pub max_sections: u8,
    pub n_sections: u8,
    pub coeff_frac_bits: u8,
    pub scale_frac_bits: u8,
    pub auto_offset: bool,
    pub offset: i32,
    pub scale: i32,
    pub sections: Vec<Section>,
}

/// The filter output would not fit 32 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

/// `coeff * value`, rounded and shifted right by `frac_bits`; the
/// truncated result and whether it overflowed 32 bits.
#[inline]
fn fixed_mul(coeff: i32, value: i32, frac_bits: u8) -> (i32, bool) {
    let mut r = coeff as i64 * value as i64;
    if frac_bits != 0 {
        r = r.wrapping_add(1i64 << (frac_bits - 1));
        r >>= frac_bits;
    }
    (r as i32, r > i32::MAX as i64 || r < i32::MIN as i64)
}

impl SosFilter {
    pub fn new(max_sections: u8) -> SosFilter {
        SosFilter {
            max_sections,
            sections: vec![Section::default(); max_sections as usize],
            ..Default::default()
        }
    }

    /// Filter one raw sample.
    pub fn apply(&mut self, raw: i32) -> Result<i32, Overflow> {
        if self.auto_offset {
            self.offset = raw.wrapping_neg();
            self.auto_offset = false;
        }
        let offset = self.offset;
        let offset_val = raw.wrapping_add(offset);
        if (offset >= 0) != (offset_val >= raw) {
            return Err(Overflow);
        }
        let (mut cur, ovf) = fixed_mul(self.scale, offset_val, self.scale_frac_bits);
        if ovf {
            return Err(Overflow);
        }
        let cfb = self.coeff_frac_bits;
        for s in self.sections[..self.n_sections as usize].iter_mut() {
            let (next0, o0) = fixed_mul(s.coeff[0], cur, cfb);
            let next = next0.wrapping_add(s.state[0]);
            let (c1_cur, o1) = fixed_mul(s.coeff[1], cur, cfb);
            let (c3_next, o3) = fixed_mul(s.coeff[3], next, cfb);
            let (c2_cur, o2) = fixed_mul(s.coeff[2], cur, cfb);
            let (c4_next, o4) = fixed_mul(s.coeff[4], next, cfb);
            if o0 | o1 | o2 | o3 | o4 {
                return Err(Overflow);
            }
            s.state[0] = c1_cur.wrapping_sub(c3_next).wrapping_add(s.state[1]);
            s.state[1] = c2_cur.wrapping_sub(c4_next);
            cur = next;
        }
        Ok(cur)
    }
}

/// The sos_filter an oid names (an index in the probe group's state).
pub fn lookup(mcu: &Mcu, oid: u32) -> Result<usize, Shutdown> {
    mcu.oid_lookup::<SosFilter>(oid)
}

crate::command!(CONFIG_SOS_FILTER = "config_sos_filter oid=%c max_sections=%c" => config_sos_filter);
fn config_sos_filter(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, max_sections);
    mcu.oid_new::<SosFilter>(oid)?;
    mcu.objs.push(SosFilter::new(max_sections as u8));
    Ok(())
}

fn section_of(mcu: &mut Mcu, a: &Args) -> Result<(usize, usize), Shutdown> {
    let i = lookup(mcu, a.get(0))?;
    let f = &mut mcu.objs.of::<SosFilter>()[i];
    // Changing a section or its state deactivates the filter.
    f.n_sections = 0;
    let idx = a.get(1) as u8;
    if idx >= f.max_sections {
        return Err(BAD_SECTION);
    }
    Ok((i, idx as usize))
}

crate::command!(SOS_FILTER_SET_SECTION = "sos_filter_set_section oid=%c section_idx=%c sos0=%i sos1=%i sos2=%i sos3=%i sos4=%i" => sos_filter_set_section);
fn sos_filter_set_section(mcu: &mut Mcu, a: &Args) -> CmdResult {
    let (i, s) = section_of(mcu, a)?;
    let sec = &mut mcu.objs.of::<SosFilter>()[i].sections[s];
    for (k, c) in sec.coeff.iter_mut().enumerate() {
        *c = a.get(2 + k) as i32;
    }
    Ok(())
}

crate::command!(SOS_FILTER_SET_STATE = "sos_filter_set_state oid=%c section_idx=%c state0=%i state1=%i" => sos_filter_set_state);
fn sos_filter_set_state(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, section_idx, state0, state1);
    let (i, s) = section_of(mcu, a)?;
    let sec = &mut mcu.objs.of::<SosFilter>()[i].sections[s];
    sec.state = [state0 as i32, state1 as i32];
    Ok(())
}

crate::command!(SOS_FILTER_SET_OFFSET_SCALE = "sos_filter_set_offset_scale oid=%c offset=%i scale=%i scale_frac_bits=%c auto_offset=%c" => sos_filter_set_offset_scale);
fn sos_filter_set_offset_scale(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, offset, scale, scale_frac_bits, auto_offset);
    let i = lookup(mcu, oid)?;
    let f = &mut mcu.objs.of::<SosFilter>()[i];
    f.offset = offset as i32;
    f.scale = scale as i32;
    f.scale_frac_bits = (scale_frac_bits & 0x3f) as u8;
    f.auto_offset = auto_offset as u8 != 0;
    Ok(())
}

crate::command!(SOS_FILTER_SET_ACTIVE = "sos_filter_set_active oid=%c n_sections=%c coeff_frac_bits=%c" => sos_filter_set_active);
fn sos_filter_set_active(mcu: &mut Mcu, a: &Args) -> CmdResult {
    crate::args!(a => oid, n_sections, coeff_frac_bits);
    let i = lookup(mcu, oid)?;
    let f = &mut mcu.objs.of::<SosFilter>()[i];
    let n = n_sections as u8;
    if n > f.max_sections {
        return Err(BAD_SECTION);
    }
    f.n_sections = n;
    f.coeff_frac_bits = (coeff_frac_bits & 0x3f) as u8;
    Ok(())
}

pub static MODULE: Module<Mcu> = Module {
    commands: &[
        CONFIG_SOS_FILTER,
        SOS_FILTER_SET_SECTION,
        SOS_FILTER_SET_STATE,
        SOS_FILTER_SET_OFFSET_SCALE,
        SOS_FILTER_SET_ACTIVE,
    ],
    ..Module::EMPTY
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from an independent Python model of the reference's
    /// fixed-point steps (a 20 Hz 2nd-order Butterworth low-pass and a
    /// 1 Hz 1st-order high-pass at 400 Hz, Q2 coefficients; scale 0.5 in
    /// 16 fractional bits, offset -1000).
    #[test]
    fn matches_the_fixed_point_model() {
        let mut f = SosFilter::new(3);
        f.sections[0].coeff = [10782174, 21564349, 10782174, -838065198, 344322985];
        f.sections[1].coeff = [532687111, -532687111, 0, -528503310, 0];
        f.n_sections = 2;
        f.coeff_frac_bits = 29;
        f.offset = -1000;
        f.scale = 1 << 15;
        f.scale_frac_bits = 16;
        let inp: Vec<i32> = (0..40)
            .map(|k| 1000 + if k < 5 { 0 } else { 80000 } + ((k * 7919) % 600 - 300))
            .collect();
        let want = [
            -3, -13, -26, -35, -35, 773, 3614, 8283, 13700, 19117, 24057, 28245, 31562, 34008,
            35660, 36629, 37037, 37005, 36648, 36078, 35380, 34615, 33821, 33033, 32278, 31574,
            30919, 30305, 29730, 29195, 28700, 28234, 27783, 27345, 26922, 26515, 26119, 25721,
            25325, 24936,
        ];
        let got: Vec<i32> = inp.iter().map(|&x| f.apply(x).unwrap()).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn auto_offset_and_passthrough() {
        let mut f = SosFilter::new(0);
        f.scale = 1;
        f.auto_offset = true;
        assert_eq!(f.apply(5000), Ok(0));
        assert!(!f.auto_offset);
        assert_eq!(f.apply(5010), Ok(10));
        assert_eq!(f.apply(4990), Ok(-10));
        // raw + offset wraps: an overflow.
        assert_eq!(f.apply(i32::MIN + 5), Err(Overflow));
    }

    #[test]
    fn overflows_are_detected() {
        let mut f = SosFilter::new(0);
        f.scale = 1 << 30;
        assert_eq!(f.apply(1), Ok(1 << 30));
        assert_eq!(f.apply(2), Err(Overflow));
        assert_eq!(f.apply(-2), Ok(i32::MIN));
        assert_eq!(f.apply(3), Err(Overflow));
        let mut p = SosFilter::new(0);
        p.scale = 1;
        p.offset = i32::MAX - 9;
        assert_eq!(p.apply(5), Ok(i32::MAX - 4));
        assert_eq!(p.apply(9), Ok(i32::MAX));
        assert_eq!(p.apply(10), Err(Overflow));
        assert_eq!(p.apply(-3), Ok(i32::MAX - 12));
    }

    #[test]
    fn rounding_is_half_up_at_the_last_shifted_bit() {
        assert_eq!(fixed_mul(3, 1, 1), (2, false)); // 1.5 -> 2
        assert_eq!(fixed_mul(-3, 1, 1), (-1, false)); // -1.5 -> -1
        assert_eq!(fixed_mul(5, 1, 2), (1, false)); // 1.25 -> 1
        assert!(fixed_mul(i32::MAX, i32::MAX, 0).1);
    }
}
