//! The nested AMD-V test host itself: a QEMU TCG VM whose emulated CPU has
//! SVM with nested paging, whose kernel's kvm_amd gives a real `/dev/kvm`,
//! and inside which QEMU `-enable-kvm` boots our guest kernel and agent
//! through `hull run --hypervisor qemu`. If these fail, nothing measured in
//! the test host means anything.

use hull_tests::testhost::{self, Options};

#[test]
fn test_host_has_svm_npt_and_kvm_with_nested_paging() {
    let run = testhost::run_script(
        r#"
flags=$(grep -m1 '^flags' /proc/cpuinfo)
for f in svm npt; do
  case " $flags " in *" $f "*) echo "flag-$f=yes" ;; *) echo "flag-$f=no" ;; esac
done
test -c /dev/kvm
dmesg | grep -i 'kvm' || true
dmesg | grep -q 'Nested Paging enabled' && echo npt-in-kvm=yes
echo kernel=$(uname -r)
"#,
    );
    run.assert_passed();
    assert_eq!(run.value("flag-svm"), Some("yes"), "{}", run.describe());
    assert_eq!(run.value("flag-npt"), Some("yes"), "{}", run.describe());
    assert_eq!(run.value("npt-in-kvm"), Some("yes"), "{}", run.describe());
}

#[test]
fn a_failing_script_fails_the_run_with_its_status() {
    let run = testhost::run_script("echo before; false; echo never");
    assert_eq!(run.status, Some(1), "{}", run.describe());
    assert!(run.output.contains("before"));
    assert!(!run.output.contains("never"));
}

#[test]
fn a_hung_script_times_out() {
    let opts = Options {
        timeout: std::time::Duration::from_secs(20),
        ..Options::default()
    };
    let run = testhost::run("echo sleeping; sleep 1000", &opts);
    assert!(run.timed_out, "{}", run.describe());
    assert_eq!(run.status, None);
    assert!(run.describe().contains("TIMED OUT"));
}

#[test]
fn inner_qemu_with_kvm_boots_the_guest_to_the_agent() {
    let opts = Options {
        with_qemu: true,
        ..Options::default()
    };
    let run = testhost::run(
        r#"
hull load -i $HULL_IMAGES/busybox.tar >/dev/null
start=$(cut -d' ' -f1 /proc/uptime)
timeout -s KILL 150 hull run --rm --hypervisor qemu hull-demo/busybox sh -c 'echo guest-kernel=$(uname -r); exit 7' >out 2>err || echo status=$?
end=$(cut -d' ' -f1 /proc/uptime)
cat out; echo "stderr: $(cat err)"
# A run that did not end as asked shows the inner guest's console.
if ! grep -q guest-kernel= out; then
  for log in $(find "$HULL_RUN_DIR" "$HULL_ROOT" -name 'console.log' -o -name 'supervisor.log'); do
    echo "--- $log"; tail -n 40 "$log"
  done
fi
echo "run-seconds=$(awk "BEGIN{print $end-$start}")"
"#,
        &opts,
    );
    run.assert_passed();
    assert_eq!(run.value("status"), Some("7"), "{}", run.describe());
    assert!(
        run.value("guest-kernel")
            .is_some_and(|k| k.ends_with("-hull")),
        "{}",
        run.describe()
    );
    // hull said nothing about TCG: it used KVM.
    assert!(!run.output.contains("TCG"), "{}", run.describe());
    eprintln!(
        "inner hull run via QEMU+KVM: {:?}s",
        run.value("run-seconds")
    );
}
