//! User test programs (`src/bin/`); each prints what it checks and exits 0
//! when all held. The kernel's `scenario=user-NAME` runs them.
#![no_std]

pub mod checkpoint;
pub mod lend;
pub mod physobj;
pub mod refs;
pub mod rng;
pub mod round;
