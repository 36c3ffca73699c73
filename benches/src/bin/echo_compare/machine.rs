//! The machine a run measured on: the CPU model, count and clock and the
//! kernel, as Linux reports them. Printed when a run starts and under its
//! table, so that every figure says where it came from. (The benchmark VM
//! once changed CPU between two sessions and nobody noticed for a day:
//! docs/benchmarks.md, "Machine".)

/// One line, for example
/// `"Intel(R) Xeon(R) Processor", 2 CPUs at 2300 MHz, kernel 6.18.44-fc-v1252`.
pub fn describe() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    describe_from(&cpuinfo, kernel.trim(), cpus)
}

/// The value of the first `name : value` line of `/proc/cpuinfo` text.
fn field<'a>(cpuinfo: &'a str, name: &str) -> Option<&'a str> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then(|| value.trim())
    })
}

/// [`describe`] from the texts it reads.
fn describe_from(cpuinfo: &str, kernel: &str, cpus: usize) -> String {
    let model = field(cpuinfo, "model name").unwrap_or("unknown CPU");
    let clock = field(cpuinfo, "cpu MHz")
        .and_then(|mhz| mhz.parse::<f64>().ok())
        .map_or(String::new(), |mhz| format!(" at {mhz:.0} MHz"));
    let kernel = if kernel.is_empty() { "unknown" } else { kernel };
    format!("\"{model}\", {cpus} CPUs{clock}, kernel {kernel}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_first_cpus_model_and_clock_and_the_kernel() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\n\
                       model name\t: Intel(R) Xeon(R) Processor\ncpu MHz\t\t: 2300.000\n\n\
                       processor\t: 1\nmodel name\t: Other\ncpu MHz\t\t: 1.0\n";
        assert_eq!(
            describe_from(cpuinfo, "6.18.44-fc-v1252", 2),
            "\"Intel(R) Xeon(R) Processor\", 2 CPUs at 2300 MHz, kernel 6.18.44-fc-v1252"
        );
    }

    #[test]
    fn says_unknown_for_what_it_cannot_read() {
        assert_eq!(
            describe_from("", "", 1),
            "\"unknown CPU\", 1 CPUs, kernel unknown"
        );
    }
}
