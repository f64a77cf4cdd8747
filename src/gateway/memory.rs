//! Does this machine (or this cgroup) have the memory the gateway's JVM will take?
//!
//! A gateway that runs out of memory does not fail cleanly: the JVM throws
//! `OutOfMemoryError` inside Swing's event thread and the window freezes, or the kernel's
//! OOM killer ends it mid-login, and ibwarden sees a hang or a crash it can only retry. So
//! `ibwarden check` and the start of `ibwarden run` compare what the JVM is allowed to use
//! (`-Xmx` from the install's `.vmoptions` and `gateway.jvm_args`, the last one wins as in
//! the JVM) plus its native overhead with what the machine has available, taking the tighter
//! of the host and the cgroup (a container or a systemd `MemoryMax=`).
//!
//! The numbers come from `sysinfo` (host memory and cgroup v1/v2 limits in one call). The
//! comparison itself is pure and tested here.

/// Native memory a gateway JVM uses beside its heap: metaspace, code cache, thread stacks,
/// Swing/Java2D buffers and the embedded browser's share. An estimate; the check only warns.
pub const JVM_NATIVE_OVERHEAD: u64 = 400 << 20;

/// The JVM's own default heap when no `-Xmx` is given: a quarter of physical memory.
fn default_heap(physical: u64) -> u64 {
    physical / 4
}

/// Parses a JVM size (`768m`, `1g`, `1024K`, `536870912`) into bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_lowercase()),
        _ => (text, 'b'),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let shift = match unit {
        'b' => 0,
        'k' => 10,
        'm' => 20,
        'g' => 30,
        't' => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

/// The maximum heap the JVM options set (`-Xmx<size>` or `-XX:MaxHeapSize=<size>`), the last
/// one winning as in the JVM; `None` if none is set (or the last one does not parse).
pub fn max_heap<'a>(options: impl IntoIterator<Item = &'a str>) -> Option<u64> {
    let mut last = None;
    for opt in options {
        let value = opt
            .strip_prefix("-Xmx")
            .or_else(|| opt.strip_prefix("-XX:MaxHeapSize="));
        if let Some(v) = value {
            last = Some(parse_size(v));
        }
    }
    last.flatten()
}

/// What the machine offers: the host's figures and, when set, the cgroup's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Available {
    /// Physical memory of the host.
    pub host_total: u64,
    /// Memory the host can give without swapping (`MemAvailable`).
    pub host_available: u64,
    /// The cgroup's limit and what is left under it, if a limit applies.
    pub cgroup: Option<(u64, u64)>,
}

impl Available {
    /// Reads the host's and the cgroup's memory through `sysinfo`.
    pub fn read() -> Option<Available> {
        use sysinfo::{MemoryRefreshKind, RefreshKind, System};
        let sys = System::new_with_specifics(
            RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()),
        )
        .ok()?;
        let cgroup = sys
            .cgroup_limits()
            // sysinfo reports "no limit" as the host's total (or more).
            .filter(|c| c.total_memory > 0 && c.total_memory < sys.total_memory())
            .map(|c| (c.total_memory, c.free_memory));
        Some(Available {
            host_total: sys.total_memory(),
            host_available: sys.available_memory(),
            cgroup,
        })
    }

    /// The memory a new process can actually get: the tighter of host and cgroup.
    pub fn usable(&self) -> u64 {
        match self.cgroup {
            Some((_, free)) => free.min(self.host_available),
            None => self.host_available,
        }
    }

    /// The physical memory the JVM sizes its default heap from (it honours cgroup limits).
    fn physical(&self) -> u64 {
        match self.cgroup {
            Some((limit, _)) => limit.min(self.host_total),
            None => self.host_total,
        }
    }
}

/// The verdict of comparing the gateway's needs with the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The heap the JVM will be allowed (`-Xmx`, or the JVM's default).
    pub heap: u64,
    /// Whether `heap` came from an option (`false`: the JVM's default of a quarter of RAM).
    pub heap_configured: bool,
    /// Heap plus native overhead.
    pub need: u64,
    /// What the machine offers now.
    pub usable: u64,
    /// The cgroup limit, when one applies.
    pub limit: Option<u64>,
}

impl Verdict {
    /// Enough memory now for the JVM to reach its full heap.
    pub fn enough(&self) -> bool {
        self.usable >= self.need && self.limit.is_none_or(|l| l >= self.need)
    }
}

/// Compares the JVM options' heap (plus overhead) with what `available` offers.
pub fn assess<'a>(options: impl IntoIterator<Item = &'a str>, available: &Available) -> Verdict {
    let (heap, heap_configured) = match max_heap(options) {
        Some(h) => (h, true),
        None => (default_heap(available.physical()), false),
    };
    Verdict {
        heap,
        heap_configured,
        need: heap.saturating_add(JVM_NATIVE_OVERHEAD),
        usable: available.usable(),
        limit: available.cgroup.map(|(limit, _)| limit),
    }
}

/// Bytes for people: `1.5 GiB`, `768 MiB`.
pub fn human(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / GIB)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let heap = if self.heap_configured {
            format!("-Xmx {}", human(self.heap))
        } else {
            format!("default heap {}", human(self.heap))
        };
        write!(
            f,
            "{} available{}; the gateway needs about {} ({heap} + {} native)",
            human(self.usable),
            self.limit
                .map(|l| format!(" (cgroup limit {})", human(l)))
                .unwrap_or_default(),
            human(self.need),
            human(JVM_NATIVE_OVERHEAD),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    #[test]
    fn sizes_parse_like_the_jvm() {
        assert_eq!(parse_size("768m"), Some(768 * MIB));
        assert_eq!(parse_size("768M"), Some(768 * MIB));
        assert_eq!(parse_size("2g"), Some(2 * GIB));
        assert_eq!(parse_size("1024k"), Some(MIB));
        assert_eq!(parse_size("536870912"), Some(512 * MIB));
        for bad in ["", "m", "1.5g", "12x", "-1g", "99999999999t"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_last_heap_option_wins() {
        assert_eq!(max_heap(["-Xmx768m", "-XX:+UseG1GC"]), Some(768 * MIB));
        assert_eq!(max_heap(["-Xmx768m", "-Xmx2g"]), Some(2 * GIB));
        assert_eq!(max_heap(["-Xmx2g", "-XX:MaxHeapSize=1g"]), Some(GIB));
        assert_eq!(max_heap(["-Xms512m", "-Dx=-Xmx9g"]), None);
        // A broken last value: unknown, not the earlier one.
        assert_eq!(max_heap(["-Xmx1g", "-Xmxlots"]), None);
    }

    fn host(total: u64, available: u64) -> Available {
        Available {
            host_total: total,
            host_available: available,
            cgroup: None,
        }
    }

    #[test]
    fn a_roomy_host_is_enough() {
        let v = assess(["-Xmx768m"], &host(8 * GIB, 6 * GIB));
        assert!(v.enough(), "{v}");
        assert_eq!(v.need, 768 * MIB + JVM_NATIVE_OVERHEAD);
        assert_eq!(
            v.to_string(),
            "6.0 GiB available; the gateway needs about 1.1 GiB (-Xmx 768 MiB + 400 MiB native)"
        );
    }

    #[test]
    fn a_tight_cgroup_is_not_enough_even_on_a_big_host() {
        let a = Available {
            cgroup: Some((GIB, 900 * MIB)),
            ..host(64 * GIB, 60 * GIB)
        };
        let v = assess(["-Xmx768m"], &a);
        assert!(!v.enough(), "{v}");
        assert_eq!(v.usable, 900 * MIB);
        assert!(v.to_string().contains("cgroup limit 1.0 GiB"), "{v}");
    }

    #[test]
    fn a_heap_larger_than_the_limit_is_not_enough_even_when_free_now() {
        let a = Available {
            cgroup: Some((2 * GIB, 2 * GIB)),
            ..host(64 * GIB, 60 * GIB)
        };
        assert!(!assess(["-Xmx2g"], &a).enough());
        assert!(assess(["-Xmx1g"], &a).enough());
    }

    #[test]
    fn without_xmx_the_jvm_default_follows_the_cgroup() {
        let a = Available {
            cgroup: Some((4 * GIB, 3 * GIB)),
            ..host(64 * GIB, 60 * GIB)
        };
        let v = assess(std::iter::empty(), &a);
        assert!(!v.heap_configured);
        assert_eq!(v.heap, GIB);
        assert!(v.to_string().contains("default heap 1.0 GiB"), "{v}");
    }

    #[test]
    fn this_machine_reports_memory() {
        // sysinfo reads /proc/meminfo and the cgroup files: the numbers must be plausible.
        let a = Available::read().expect("sysinfo reads memory on Linux");
        assert!(a.host_total >= 64 * MIB, "{a:?}");
        assert!(a.host_available <= a.host_total, "{a:?}");
        assert!(a.usable() <= a.host_available, "{a:?}");
    }
}
