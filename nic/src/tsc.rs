//! The CPU's time-stamp counter: a clock read without a call into the vDSO, for the engine's
//! one clock read per turn (`megatcp_engine`'s turn clock calibrates it against the
//! operating system's clock and converts).
//!
//! Only where the counter is usable as a clock: x86-64 with an invariant TSC (`constant_tsc`
//! and `nonstop_tsc` in `/proc/cpuinfo`: the same rate on every core, in every power state).
//! Elsewhere [`usable`] is false and the engine keeps the operating system's clock.

/// Whether the TSC can serve as a clock here (see the module docs). Reads `/proc/cpuinfo`:
/// call it once.
pub fn usable() -> bool {
    if !cfg!(target_arch = "x86_64") {
        return false;
    }
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return false;
    };
    let flags = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|w| w == f);
    has("constant_tsc") && has("nonstop_tsc")
}

/// The counter now (0 where there is none: check [`usable`] first).
#[inline]
pub fn read() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC reads a register; it has no memory effects and no preconditions
        // (x86-64 always has it; the kernel does not disable it for user space on Linux).
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_advances_where_it_is_usable() {
        if !usable() {
            eprintln!("no invariant TSC here");
            return;
        }
        let a = read();
        std::thread::sleep(std::time::Duration::from_millis(1));
        let b = read();
        assert!(b > a, "{a} then {b}");
    }
}
