//! Real-KVM test: a stand-in guest drives hull-vmm's virtio-blk through a
//! polling virtio-mmio driver, reading and writing sectors of real files.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn guest_reads_and_writes_real_files() {
    let dir = tempfile::tempdir().unwrap();
    let rw = dir.path().join("rw.img");
    let ro = dir.path().join("ro.img");
    let rw_data: Vec<u8> = (0..65536u32).map(|i| (i * 7 + 1) as u8).collect();
    let ro_data: Vec<u8> = (0..32768u32).map(|i| (i * 3) as u8).collect();
    std::fs::write(&rw, &rw_data).unwrap();
    std::fs::write(&ro, &ro_data).unwrap();
    let k = guest("standin64.elf");
    let o = run_vmm(
        &[
            "--kernel",
            k.to_str().unwrap(),
            "--memory",
            "64",
            "--cmdline",
            "console=ttyS0 standin=blk",
            "--block",
            &format!("{},id=first", rw.display()),
            "--block",
            &format!("{},ro", ro.display()),
        ],
        Duration::from_secs(60),
    );
    let out = expect_ok(&o);
    assert!(
        out.contains("virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6"),
        "{out}"
    );
    let pattern: Vec<u8> = (0..1024u32).map(|i| (i * 13 + 5) as u8).collect();
    let expect = [
        "blk0: capacity 128 rw id first".to_string(),
        format!(
            "blk0: read 0-7 status 0 fnv1a {:#x}",
            fnv1a(&rw_data[..4096])
        ),
        "blk0: write 8-9 status 0".into(),
        "blk0: flush status 0".into(),
        format!("blk0: read 8-9 status 0 fnv1a {:#x}", fnv1a(&pattern)),
        "blk0: past-end status 1".into(),
        "blk0: malformed used len 0 status 0xee".into(),
        "blk0: wild buffer status 1".into(),
        "blk0: still works status 0".into(),
        "blk1: capacity 64 ro id hull1".into(),
        format!(
            "blk1: read 0-7 status 0 fnv1a {:#x}",
            fnv1a(&ro_data[..4096])
        ),
        "blk1: write 8-9 status 1".into(),
        "blk1: flush status 0".into(),
        format!(
            "blk1: read 8-9 status 0 fnv1a {:#x}",
            fnv1a(&ro_data[4096..5120])
        ),
        "blk: 2 devices tested".into(),
    ];
    for line in &expect {
        assert!(
            out.lines().any(|l| l == line),
            "missing {line:?} in:\n{out}"
        );
    }
    let after = std::fs::read(&rw).unwrap();
    assert_eq!(
        &after[4096..5120],
        &pattern[..],
        "guest write did not reach the file"
    );
    assert_eq!(&after[..4096], &rw_data[..4096]);
    assert_eq!(&after[5120..], &rw_data[5120..]);
    assert_eq!(
        std::fs::read(&ro).unwrap(),
        ro_data,
        "read-only disk was modified"
    );
}

#[test]
fn an_iops_limit_slows_the_guest_down_to_its_rate() {
    let dir = tempfile::tempdir().unwrap();
    let rw = dir.path().join("rw.img");
    let ro = dir.path().join("ro.img");
    std::fs::write(&rw, vec![1u8; 65536]).unwrap();
    std::fs::write(&ro, vec![2u8; 32768]).unwrap();
    let k = guest("standin64.elf");
    let run = |limit: &str| {
        let start = std::time::Instant::now();
        let o = run_vmm(
            &[
                "--kernel",
                k.to_str().unwrap(),
                "--memory",
                "64",
                "--cmdline",
                "console=ttyS0 standin=blk",
                "--block",
                &format!("{},id=first{limit}", rw.display()),
                "--block",
                &format!("{},ro", ro.display()),
            ],
            Duration::from_secs(60),
        );
        let out = expect_ok(&o);
        assert!(out.contains("blk: 2 devices tested"), "{out}");
        assert!(out.contains("blk0: still works status 0"), "{out}");
        start.elapsed()
    };
    let free = run("");
    // Two requests a second, a bucket of two: blk0 makes more than five
    // valid requests, so at least three of them wait half a second.
    let limited = run(",iops=2");
    eprintln!("blk guest: {free:?} unlimited, {limited:?} at iops=2");
    assert!(
        limited >= Duration::from_millis(1500),
        "iops=2 took only {limited:?} (unlimited {free:?})"
    );
}
