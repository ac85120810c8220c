//! Simulated chips of the display group (see the bus assignments in mod.rs).

use crate::hw::sim::SimState;

/// Add this group's chips to the simulated board.
pub fn attach(_s: &mut SimState) {}
