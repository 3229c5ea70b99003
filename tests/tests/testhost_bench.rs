//! `make bench` (bench/testhost/run.sh): hull-vmm next to QEMU microvm
//! `-enable-kvm` inside the nested AMD-V test host. Ignored in `make test`;
//! the measuring happens in `bench/testhost/inner.sh`, with the static
//! `measure` tool that run.sh builds (`HULL_BENCH_MEASURE`).

use std::time::Duration;

use hull_tests::testhost::{self, Options};

const INNER: &str = include_str!("../../bench/testhost/inner.sh");

#[test]
#[ignore = "benchmark: run by bench/testhost/run.sh (make bench)"]
fn hull_vmm_vs_qemu_microvm_in_the_test_host() {
    let measure = std::env::var_os("HULL_BENCH_MEASURE")
        .expect("HULL_BENCH_MEASURE is not set: run bench/testhost/run.sh");
    let n: u32 = std::env::var("BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let script = format!("BENCH_N={n}\n{INNER}");
    let run = testhost::run(
        &script,
        &Options {
            with_qemu: true,
            timeout: Duration::from_secs(120 + 60 * u64::from(n)),
            files: vec![(
                "/hull/measure".into(),
                std::fs::read(measure).expect("read the measure tool"),
            )],
            ..Options::default()
        },
    );
    println!("{}", run.output);
    println!(
        "(test host boot {:.2}s, whole run {:.1}s; N={} per VMM, inside a TCG test host with nested AMD-V)",
        run.boot_seconds.unwrap_or(f64::NAN),
        run.elapsed.as_secs_f64(),
        n
    );
    run.assert_passed();
}
